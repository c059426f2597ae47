// A model bundle: the directory `vigil train` writes and everything that
// scores reads.
//
//   MODEL_DIR/model.json              XGBoost's JSON model
//   MODEL_DIR/manifest.json           features in order, how CSV columns map
//                                     to them, spec and schema hashes, data,
//                                     ranges, parameters, metrics, search
//                                     trials, calibration (docs/training.md)
//   MODEL_DIR/reference_profile.json  every feature and the score on the
//                                     training rows (vigil.profile/1)
//
// A bare XGBoost JSON file is accepted too: its stored feature names become
// numeric inputs matched by name.
//
// Thread-safety: a loaded Bundle is immutable.
#ifndef VIGIL_MODEL_BUNDLE_H_
#define VIGIL_MODEL_BUNDLE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "model/dataset.h"
#include "model/forest.h"
#include "model/isotonic.h"
#include "nlohmann/json.hpp"

namespace vigil::model {

inline constexpr char kManifestFormat[] = "vigil.model/1";

struct Bundle {
  std::string path;   // the directory, or the bare model file
  bool bare = false;  // a bare XGBoost JSON model
  nlohmann::ordered_json manifest;  // empty for a bare model
  std::string model_json;
  std::shared_ptr<const Forest> forest;  // model.json, loaded and checked
  FeatureLayout layout;
  std::string id_column;         // the id column it was trained with ("" when unknown)
  std::string time_column;       // the time column it was trained with ("" when unknown)
  std::string spec_hash;         // the feature spec's hash ("" when not from backfill)
  std::optional<IsotonicCalibration> calibration;

  // Errors say which file is missing or malformed, and why.
  static absl::StatusOr<Bundle> Load(const std::string& path);
  // A short name for messages: the directory or file name.
  std::string name() const;
  // Whether the bundle may take the features of the spec whose hashes
  // (FeatureSpec::content_hash and legacy_hash) these are: it names either
  // (a bundle trained before 2026-12 names the legacy one), or names none,
  // or they are unknown ("").
  bool TakesSpec(std::string_view content_hash, std::string_view legacy_hash) const {
    return spec_hash.empty() || content_hash.empty() || spec_hash == content_hash ||
           spec_hash == legacy_hash;
  }
};

// Refuses to score a table whose features were computed by another spec,
// or whose feature columns differ (names or order) from the model's.
absl::Status CheckCompatible(const Bundle& bundle, const CsvTable& table, const TableColumns& cols);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_BUNDLE_H_
