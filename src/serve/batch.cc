#include "serve/batch.h"

#include "core/strings.h"
#include "simdjson.h"

namespace vigil::serve {

absl::StatusOr<std::vector<std::string>> SplitBatch(std::string_view body, bool allow_object) {
  namespace od = simdjson::ondemand;
  simdjson::padded_string padded(body);
  od::parser parser;
  od::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS)
    return absl::InvalidArgumentError("the body is not valid JSON");
  od::json_type type;
  if (doc.type().get(type) != simdjson::SUCCESS) return absl::InvalidArgumentError("the body is not valid JSON");
  std::vector<std::string> items;
  if (type == od::json_type::object && allow_object) {
    std::string_view raw;
    od::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS || obj.raw_json().get(raw) != simdjson::SUCCESS)
      return absl::InvalidArgumentError("the body is not valid JSON");
    items.emplace_back(raw);
    return items;
  }
  if (type != od::json_type::array) {
    return absl::InvalidArgumentError(allow_object ? "the body must be an event object or an array of them"
                                                   : "the body must be a JSON array of events");
  }
  od::array arr;
  if (doc.get_array().get(arr) != simdjson::SUCCESS) return absl::InvalidArgumentError("the body is not valid JSON");
  size_t i = 0;
  for (auto element : arr) {
    od::value v;
    od::json_type t;
    od::object obj;
    std::string_view raw;
    if (element.get(v) != simdjson::SUCCESS || v.type().get(t) != simdjson::SUCCESS)
      return absl::InvalidArgumentError(StrCat("element ", i, " of the array is not valid JSON"));
    if (t != od::json_type::object) return absl::InvalidArgumentError(StrCat("element ", i, " of the array is not an object"));
    if (v.get_object().get(obj) != simdjson::SUCCESS || obj.raw_json().get(raw) != simdjson::SUCCESS)
      return absl::InvalidArgumentError(StrCat("element ", i, " of the array is not valid JSON"));
    items.emplace_back(raw);
    ++i;
  }
  return items;
}

bool IsLabelEvent(std::string_view event) {
  namespace od = simdjson::ondemand;
  simdjson::padded_string padded(event);
  od::parser parser;
  od::document doc;
  od::object obj;
  std::string_view type;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_object().get(obj) != simdjson::SUCCESS)
    return false;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) return false;
    if (key == "event_type") return field.value().get_string().get(type) == simdjson::SUCCESS && type == "label";
  }
  return false;
}

}  // namespace vigil::serve
