#include "model/bundle.h"

#include <filesystem>

#include "core/file.h"
#include "core/strings.h"

namespace vigil::model {
namespace {

using core::ReadFile;

// A string field of the manifest; "" when absent or not a string (train
// writes null for an id column the table did not have).
std::string StringField(const nlohmann::ordered_json& manifest, const char* key) {
  return manifest.contains(key) && manifest[key].is_string() ? manifest[key].get<std::string>() : "";
}

}  // namespace

absl::StatusOr<Bundle> Bundle::Load(const std::string& path) {
  namespace fs = std::filesystem;
  Bundle b;
  b.path = path;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    if (!fs::exists(path, ec)) return absl::NotFoundError(StrCat(path, ": no such model bundle or file"));
    b.bare = true;
    VIGIL_ASSIGN_OR_RETURN(b.model_json, ReadFile(path));
    VIGIL_ASSIGN_OR_RETURN(b.forest, Forest::FromJson(b.model_json, path));
    if (b.forest->feature_names().empty()) {
      return absl::InvalidArgumentError(
          StrCat(path, ": the model stores no feature names, so columns cannot be matched; train it "
                       "from a pandas DataFrame or set feature_names on the DMatrix"));
    }
    b.layout = FeatureLayout::Numeric(b.forest->feature_names());
    return b;
  }
  const std::string manifest_path = (fs::path(path) / "manifest.json").string();
  VIGIL_ASSIGN_OR_RETURN(std::string text, ReadFile(manifest_path));
  b.manifest = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (b.manifest.is_discarded() || !b.manifest.is_object()) {
    return absl::InvalidArgumentError(StrCat(manifest_path, ": not a JSON object"));
  }
  if (StringField(b.manifest, "format") != kManifestFormat) {
    return absl::InvalidArgumentError(
        StrCat(manifest_path, ": format is not ", kManifestFormat));
  }
  if (!b.manifest.contains("inputs")) return absl::InvalidArgumentError(StrCat(manifest_path, ": no 'inputs'"));
  auto layout = FeatureLayout::FromJson(b.manifest["inputs"]);
  if (!layout.ok()) return absl::InvalidArgumentError(StrCat(manifest_path, ": ", layout.status().message()));
  b.layout = std::move(*layout);
  b.id_column = StringField(b.manifest, "id_column");
  b.time_column = StringField(b.manifest, "time_column");
  b.spec_hash = StringField(b.manifest, "feature_spec_hash");
  if (b.manifest.contains("calibration") && b.manifest["calibration"].is_object()) {
    auto cal = IsotonicCalibration::FromJson(b.manifest["calibration"]);
    if (!cal.ok()) return absl::InvalidArgumentError(StrCat(manifest_path, ": calibration: ", cal.status().message()));
    b.calibration = std::move(*cal);
  }
  const std::string model_path = (fs::path(path) / "model.json").string();
  VIGIL_ASSIGN_OR_RETURN(b.model_json, ReadFile(model_path));
  VIGIL_ASSIGN_OR_RETURN(b.forest, Forest::FromJson(b.model_json, model_path));
  // The manifest and the model must agree on the features (model.json may
  // lack names: bundles written before train stored them).
  if (b.forest->num_features() != b.layout.num_features() ||
      (!b.forest->feature_names().empty() && b.forest->feature_names() != b.layout.feature_names)) {
    return absl::InvalidArgumentError(StrCat(path, ": model.json's features differ from manifest.json's"));
  }
  return b;
}

std::string Bundle::name() const {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

absl::Status CheckCompatible(const Bundle& bundle, const CsvTable& table, const TableColumns& cols) {
  if (!cols.from_meta) return absl::OkStatus();  // any CSV: columns are matched by name
  if (!bundle.TakesSpec(cols.spec_hash, cols.spec_legacy_hash)) {
    return absl::FailedPreconditionError(StrCat(
        "model ", bundle.name(), " was trained on features of spec ", bundle.spec_hash.substr(0, 12),
        " but ", table.path(), " was computed by spec ", cols.spec_hash.substr(0, 12),
        ": rebuild the features with the model's spec, or retrain"));
  }
  // Every model input must be one of the features the spec computes (a
  // model may use a subset: --drop).
  for (const FeatureLayout::Input& in : bundle.layout.inputs) {
    bool found = false;
    for (int c : cols.inputs) found = found || table.header()[static_cast<size_t>(c)] == in.column;
    if (!found) {
      return absl::FailedPreconditionError(
          StrCat("model ", bundle.name(), " needs feature ", in.column, ", which ", table.path(),
                 ".meta.json does not list among its feature columns"));
    }
  }
  return absl::OkStatus();
}

}  // namespace vigil::model
