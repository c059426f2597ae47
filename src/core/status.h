// Errors as values. vigil's code returns absl::Status / absl::StatusOr<T> for
// anything that can fail for a reason outside the programmer's control, and
// never throws. Debian's Abseil (20220623) predates the propagation macros,
// so they are defined here.
#ifndef VIGIL_CORE_STATUS_H_
#define VIGIL_CORE_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VIGIL_STATUS_CONCAT_INNER_(a, b) a##b
#define VIGIL_STATUS_CONCAT_(a, b) VIGIL_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function with the status of `expr` if it is not OK.
#define VIGIL_RETURN_IF_ERROR(expr)                   \
  do {                                                \
    ::absl::Status vigil_status_ = (expr);            \
    if (!vigil_status_.ok()) return vigil_status_;    \
  } while (0)

// `lhs` = the value of the StatusOr `rexpr`, or returns its status.
// `lhs` may be a declaration: VIGIL_ASSIGN_OR_RETURN(auto x, Foo());
#define VIGIL_ASSIGN_OR_RETURN(lhs, rexpr) \
  VIGIL_ASSIGN_OR_RETURN_IMPL_(VIGIL_STATUS_CONCAT_(vigil_statusor_, __LINE__), lhs, rexpr)

#define VIGIL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // VIGIL_CORE_STATUS_H_
