// The expression language of feature filters, derived features and policy
// rules (docs/expressions.md is the reference):
//
//   event.amount > 1000 and email_domain(event.email) in lists.disposable_domains
//   ratio(features.withdrawals_24h, features.deposits_24h, 0)
//   lookup("bin_country", event.card_bin) != event.country
//
// An expression is compiled once, against an event schema, the features it
// may read and the lists and tables it may use, into an immutable program
// for a small stack machine: a flat array of instructions whose stack depth
// is bounded at compile time. Every name, type and arity is checked then;
// errors name file:line:col. Evaluation cannot fail: it allocates nothing,
// takes no lock, throws nothing and makes no virtual call.
//
// Ownership: an Expr shares its program (and the lists and tables it uses)
// by reference count; copying an Expr is cheap, and the Bindings it was
// compiled with need not outlive it. Strings an evaluation returns are views
// into the record, the expression's constants or a table, valid while both
// the record's data and the Expr live.
//
// Thread-safety: Compile is independent per call. A compiled Expr is
// immutable: Eval may run concurrently on any number of threads.
#ifndef VIGIL_EXPR_EXPR_H_
#define VIGIL_EXPR_EXPR_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "event/record.h"
#include "event/schema.h"
#include "expr/tables.h"

namespace vigil::expr {

// Types of values. Every expression has one static type, checked at
// compile time; any value may also be null at run time.
enum class Kind : uint8_t { kNull, kNumber, kBool, kString };

// "null", "number", "bool", "string".
const char* KindName(Kind k);

// A run-time value. `kind` is kNull for null, otherwise the expression's
// static kind; `b`, `num` or `str` holds the value.
struct Value {
  Kind kind = Kind::kNull;
  bool b = false;
  double num = 0;
  std::string_view str;

  bool is_null() const { return kind == Kind::kNull; }
};

// What an expression may name. Used at compile time only.
struct Bindings {
  static constexpr int kSelf = -2;
  // `event.<field>` resolves per event type (a field may exist in some types
  // only). Null: the expression may not read events.
  const event::Schema* schema = nullptr;
  // `features.<name>`: the index of a feature the expression may read, or
  // nullopt if unknown or not readable, or kSelf for the feature the
  // expression defines. Empty: no feature may be read.
  std::function<std::optional<int>(std::string_view name)> feature;
  const Lists* lists = nullptr;    // `lists.<name>`; null: none
  const Tables* tables = nullptr;  // `lookup("<name>", key)`; null: none
  // `model.score`: the deciding model's score, passed to Eval (policy rules;
  // null when there is none). False: the expression may not read it.
  bool score = false;
};

// Where an expression's text starts in its file, for messages.
struct SourcePos {
  std::string file;
  int line = 1;
  int column = 1;
  // The column at which lines after the first start in the file: for a YAML
  // block scalar (`expr: |`) whose indentation YAML strips, its indentation
  // + 1. The default suits text whose later lines are not indented.
  int continuation_column = 1;
  // Where each byte of the text was written, when known
  // (core::SourceText::ScalarPositions): then line, column and
  // continuation_column are not used. The text may be shorter (its end
  // trimmed).
  std::vector<core::SourceText::Position> positions = {};
};

// Where the expression written as YAML scalar `n` starts
// (core::SourceText::ScalarStart) and where each of its bytes was written
// (ScalarPositions), in the text of n's document, for Compile.
SourcePos SourcePosOf(const core::ConfigNode& n);

// How deep an expression may nest: parentheses, function calls, `not`,
// unary minus (docs/expressions.md).
inline constexpr int kMaxNesting = 64;
// The evaluation stack: enough for any expression within kMaxNesting. A
// level holds at most one value per precedence tier waiting for its right
// side (or, and, a comparison, + and -, * / %) and two arguments of a
// function (ratio(a, b, ...)); min, max and coalesce fold pairwise.
inline constexpr int kMaxStackSlots = 7 * kMaxNesting + 2;

namespace internal {
struct Program;
}

class Expr {
 public:
  // An expression that is always null (result_kind() kNull).
  Expr();

  // Compiles `text`. Fails with InvalidArgument "file:line:col: message" at
  // the offending token: a syntax error, an unclosed string, parenthesis or
  // bracket, an unknown field, feature, list, table or function (with the
  // closest name as a hint), a wrong number of arguments, a type mismatch,
  // or an expression nested deeper than kMaxNesting.
  static absl::StatusOr<Expr> Compile(std::string_view text, const Bindings& b,
                                      const SourcePos& where);

  // Evaluates the expression on `rec`.
  // REQUIRES: `features` holds at least max(features_read()) + 1 doubles
  // (NaN = missing); it may be null when features_read() is empty. `rec`
  // comes from the schema the expression was compiled against (a record of
  // another schema, or with no type, reads every field as null).
  // `score` is what `model.score` reads (NaN: none, read as null).
  // Hot path: no allocation, no lock, no exception.
  Value Eval(const event::Record& rec, const double* features,
             double score = std::numeric_limits<double>::quiet_NaN()) const noexcept;
  // Eval as a number: bool -> 0/1, null and strings -> NaN. Hot path.
  double EvalNumber(const event::Record& rec, const double* features,
                    double score = std::numeric_limits<double>::quiet_NaN()) const noexcept;
  // Eval as a condition: true only for a boolean true or a non-zero number;
  // null -> false. Hot path.
  bool EvalBool(const event::Record& rec, const double* features,
                double score = std::numeric_limits<double>::quiet_NaN()) const noexcept;

  // The static type of the result (kNull only for an expression that is
  // always null, such as `null`).
  Kind result_kind() const;
  // Indices of the features read, sorted, distinct: for dependency order
  // and cycle checks.
  const std::vector<int>& features_read() const;
  // Names of the event fields read (without `event.`; `time` and
  // `event_type` included when read), sorted, distinct: for the leakage
  // guard.
  const std::vector<std::string>& event_fields_read() const;
  // The text compiled.
  const std::string& text() const;

 private:
  explicit Expr(std::shared_ptr<const internal::Program> p) : prog_(std::move(p)) {}
  std::shared_ptr<const internal::Program> prog_;
};

}  // namespace vigil::expr

#endif  // VIGIL_EXPR_EXPR_H_
