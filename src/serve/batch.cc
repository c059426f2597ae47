#include "serve/batch.h"

#include <span>

#include "core/strings.h"
#include "event/validator.h"
#include "simdjson.h"

namespace vigil::serve {

absl::StatusOr<std::vector<std::string>> SplitBatch(std::string_view body, bool allow_object) {
  namespace od = simdjson::ondemand;
  // simdjson refuses a text with one byte that is not UTF-8 before reading
  // any structure. The elements are found in a copy with such bytes read as
  // '?' (the offsets are the same) and taken from the body as posted: an
  // element with an invalid byte is refused on its own, as it would be
  // posted alone, and the others are decided.
  simdjson::padded_string padded(body);
  if (!simdjson::validate_utf8(body.data(), body.size())) {
    event::ReplaceInvalidUtf8(std::span<char>(padded.data(), padded.size()));
  }
  const auto as_posted = [&](std::string_view raw) {
    return body.substr(static_cast<size_t>(raw.data() - padded.data()), raw.size());
  };
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
    items.emplace_back(as_posted(raw));
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
    items.emplace_back(as_posted(raw));
    ++i;
  }
  return items;
}

bool IsLabelEvent(std::string_view event) {
  namespace od = simdjson::ondemand;
  simdjson::padded_string padded(event);
  if (!simdjson::validate_utf8(event.data(), event.size())) {
    event::ReplaceInvalidUtf8(std::span<char>(padded.data(), padded.size()));
  }
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
