// The events of a batch body (POST /v1/events:batch, /v1/labels): a JSON
// array split into its elements' texts exactly as posted, so that each is
// validated as if it had been posted alone (a duplicate key stays a
// duplicate key). Iterative (simdjson on-demand): no nesting depth can
// exhaust the stack.
//
// Thread-safety: free functions.
#ifndef VIGIL_SERVE_BATCH_H_
#define VIGIL_SERVE_BATCH_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace vigil::serve {

// The elements of the array `body`; with `allow_object`, a lone object is a
// batch of one. InvalidArgument naming the problem for anything else
// (invalid JSON, a scalar, an element that is not an object). A byte that is
// not UTF-8 fails only the element that holds it: the element is returned
// as posted, for the validator to refuse.
absl::StatusOr<std::vector<std::string>> SplitBatch(std::string_view body, bool allow_object);

// True when `event` (one JSON object) has "event_type": "label" (bytes that
// are not UTF-8 elsewhere in it do not matter).
bool IsLabelEvent(std::string_view event);

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_BATCH_H_
