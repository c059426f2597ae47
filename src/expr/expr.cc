#include "expr/expr.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/config.h"
#include "core/strings.h"
#include "core/time.h"

namespace vigil::expr {

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kNull:
      return "null";
    case Kind::kNumber:
      return "number";
    case Kind::kBool:
      return "bool";
    case Kind::kString:
      return "string";
  }
  return "?";
}

namespace internal {

// The instructions of the stack machine. Each pops its operands and pushes
// its result; jumps go to an absolute instruction index `a`.
enum class Op : uint8_t {
  kNull,       // push null
  kNumber,     // push `num`
  kBool,       // push `flag`
  kString,     // push strings[a]
  kField,      // push event field: field_maps[a + type index]
  kTime,       // push Record::time_ms
  kEventType,  // push the record's type name
  kEventId,    // push Record::event_id
  kFeature,    // push features[a]
  kScore,      // push the score passed to Eval (model.score)
  kNeg,
  kNot,     // null -> true
  kToBool,  // null -> false
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kCmpNum,  // flag: Cmp
  kCmpStr,
  kCmpBool,
  kInNum,         // number_sets[a]; flag: 1 for `not in`
  kInStr,         // string_sets[a]
  kInList,        // lists[a], ASCII case-insensitive
  kAndJump,       // top not true: replace with false, jump; else pop
  kOrJump,        // top true: jump; else pop
  kCoalesceJump,  // top not null: jump; else pop
  kRatio,
  kMin,
  kMax,
  kAbs,
  kLog1p,
  kHourOfDay,
  kDayOfWeek,
  kIsWeekend,
  kEmailDomain,
  kIpPrefix,         // flag: 16 or 24
  kLookupPrefix,     // tables[a], string key
  kLookupPrefixNum,  // tables[a], number key
  kLookupIp,         // tables[a]
};

enum class Cmp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };

struct Instr {
  Op op;
  uint8_t flag = 0;
  int32_t a = 0;
  double num = 0;
};

struct Program {
  std::string text;
  Kind kind = Kind::kNull;
  std::vector<Instr> code;
  std::vector<std::string> strings;
  // For each field reference, one entry per event type of the schema:
  // (field index << 3) | FieldType, or -1 where the type lacks the field.
  std::vector<int32_t> field_maps;
  int32_t num_types = 0;
  std::vector<std::vector<double>> number_sets;  // sorted
  std::vector<StringSet> string_sets;
  std::vector<std::shared_ptr<const StringSet>> lists;
  std::vector<std::shared_ptr<const Table>> tables;
  std::vector<int> features_read;
  std::vector<std::string> event_fields_read;
};

}  // namespace internal

namespace {

using internal::Cmp;
using internal::Instr;
using internal::Op;
using internal::Program;

// ------------------------------------------------------------------ lexer

enum class Tok : uint8_t {
  kEnd,
  kNumber,
  kString,
  kIdent,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kDot,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
};

struct Token {
  Tok tok = Tok::kEnd;
  size_t begin = 0;  // byte offsets into the text
  size_t end = 0;
  double num = 0;   // kNumber
  std::string str;  // kString: the decoded value; kIdent: the name
};

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

struct FunctionSpec {
  std::string_view name;
  int min_args;
  int max_args;  // -1: any number
};

constexpr FunctionSpec kFunctions[] = {
    {"ratio", 3, 3},      {"min", 2, -1},         {"max", 2, -1},        {"abs", 1, 1},
    {"log1p", 1, 1},      {"coalesce", 2, -1},    {"hour_of_day", 1, 1}, {"day_of_week", 1, 1},
    {"is_weekend", 1, 1}, {"email_domain", 1, 1}, {"ip_prefix", 2, 2},   {"lookup", 2, 2},
};

constexpr std::string_view kKeywords[] = {"and", "or", "not", "in", "true", "false", "null"};

std::string ArgCount(int n) { return n == 1 ? "1 argument" : StrCat(n, " arguments"); }

std::string_view KindArticle(Kind k) {
  switch (k) {
    case Kind::kNull:
      return "null";
    case Kind::kNumber:
      return "a number";
    case Kind::kBool:
      return "a bool";
    case Kind::kString:
      return "a string";
  }
  return "?";
}

Kind KindOfField(event::FieldType t) {
  switch (t) {
    case event::FieldType::kString:
    case event::FieldType::kEnum:
      return Kind::kString;
    case event::FieldType::kBool:
      return Kind::kBool;
    case event::FieldType::kInt:
    case event::FieldType::kFloat:
    case event::FieldType::kDecimal:
    case event::FieldType::kTimestamp:
      return Kind::kNumber;
  }
  return Kind::kNull;
}

// What a parsed sub-expression left on the stack.
struct Typed {
  Kind kind = Kind::kNull;
  size_t begin = 0;  // its text: [begin, end)
  size_t end = 0;
  int domain = -1;  // index of the set of strings it can take (enum, event_type), or -1
  bool string_literal = false;
  std::string literal;  // the value when string_literal
};

Typed MakeTyped(Kind kind, size_t begin, size_t end) {
  Typed t;
  t.kind = kind;
  t.begin = begin;
  t.end = end;
  return t;
}

class Compiler {
 public:
  Compiler(std::string_view text, const Bindings& b, const SourcePos& where)
      : text_(text), b_(b), where_(where), prog_(std::make_shared<Program>()) {
    prog_->text = std::string(text);
    if (b_.schema != nullptr) prog_->num_types = static_cast<int32_t>(b_.schema->types.size());
  }

  absl::StatusOr<std::shared_ptr<const Program>> Run() {
    VIGIL_RETURN_IF_ERROR(Lex());
    if (Cur().tok == Tok::kEnd) return ErrorAt(Cur().begin, "empty expression");
    Typed t;
    VIGIL_RETURN_IF_ERROR(ParseOr(&t));
    if (Cur().tok != Tok::kEnd) {
      if (Cur().tok == Tok::kRParen) return ErrorAt(Cur().begin, "unmatched ')'");
      if (Cur().tok == Tok::kRBracket) return ErrorAt(Cur().begin, "unmatched ']'");
      return ErrorAt(Cur().begin, StrCat("unexpected ", Describe(Cur()),
                                         " after a complete expression (a missing operator?)"));
    }
    if (overflow_) {
      return ErrorAt(overflow_at_, StrCat("expression too deeply nested: it needs more than ",
                                          kMaxStackSlots, " stack slots"));
    }
    prog_->kind = t.kind;
    std::sort(prog_->features_read.begin(), prog_->features_read.end());
    prog_->features_read.erase(
        std::unique(prog_->features_read.begin(), prog_->features_read.end()),
        prog_->features_read.end());
    std::sort(prog_->event_fields_read.begin(), prog_->event_fields_read.end());
    prog_->event_fields_read.erase(
        std::unique(prog_->event_fields_read.begin(), prog_->event_fields_read.end()),
        prog_->event_fields_read.end());
    return std::shared_ptr<const Program>(std::move(prog_));
  }

 private:
  // ------------------------------------------------------------ errors

  // "line:col" of byte `offset` of the text.
  std::string LineCol(size_t offset) const {
    const std::vector<core::SourceText::Position>& at = where_.positions;
    if (!at.empty()) {
      if (offset < at.size()) return StrCat(at[offset].line, ":", at[offset].column);
      // The end of the text: the column after its last character.
      return StrCat(at.back().line, ":", at.back().column + 1);
    }
    int line = where_.line;
    int col = where_.column;
    for (size_t i = 0; i < offset && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = where_.continuation_column;
      } else if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) {
        ++col;  // columns count characters, not UTF-8 continuation bytes
      }
    }
    return StrCat(line, ":", col);
  }

  // "file:line:col" of byte `offset` of the text.
  std::string Where(size_t offset) const {
    return StrCat(where_.file.empty() ? std::string_view("<expression>") : where_.file, ":",
                  LineCol(offset));
  }

  absl::Status ErrorAt(size_t offset, std::string_view message) const {
    return absl::InvalidArgumentError(StrCat(Where(offset), ": ", message));
  }

  std::string_view Text(const Typed& t) const { return text_.substr(t.begin, t.end - t.begin); }

  // "'x'" for messages, shortened.
  std::string Quote(std::string_view s) const {
    // A string literal is shown as written, with its own quotes.
    const bool quoted = !s.empty() && (s.front() == '\'' || s.front() == '"');
    if (s.size() > 40) {
      return quoted ? StrCat(s.substr(0, 37), "...") : StrCat("'", s.substr(0, 37), "...'");
    }
    return quoted ? std::string(s) : StrCat("'", s, "'");
  }

  std::string Describe(const Token& t) const {
    if (t.tok == Tok::kEnd) return "end of expression";
    return Quote(text_.substr(t.begin, t.end - t.begin));
  }

  // ------------------------------------------------------------ lexer

  absl::Status Lex() {
    size_t i = 0;
    const size_t n = text_.size();
    while (true) {
      while (i < n &&
             (text_[i] == ' ' || text_[i] == '\t' || text_[i] == '\n' || text_[i] == '\r')) {
        ++i;
      }
      Token t;
      t.begin = i;
      if (i == n) {
        t.end = i;
        toks_.push_back(std::move(t));
        return absl::OkStatus();
      }
      const char c = text_[i];
      const char next = i + 1 < n ? text_[i + 1] : '\0';
      if (IsDigit(c)) {
        size_t j = i;
        while (j < n && IsDigit(text_[j])) ++j;
        if (j + 1 < n && text_[j] == '.' && IsDigit(text_[j + 1])) {
          ++j;
          while (j < n && IsDigit(text_[j])) ++j;
        }
        bool bad = false;
        if (j < n && (text_[j] == 'e' || text_[j] == 'E')) {
          size_t k = j + 1;
          if (k < n && (text_[k] == '+' || text_[k] == '-')) ++k;
          if (k < n && IsDigit(text_[k])) {
            while (k < n && IsDigit(text_[k])) ++k;
            j = k;
          } else {
            bad = true;
          }
        }
        size_t end = j;
        while (end < n && (IsIdentChar(text_[end]) || text_[end] == '.')) {
          bad = true;
          ++end;
        }
        if (bad) {
          return ErrorAt(i, StrCat("malformed number ", Quote(text_.substr(i, end - i))));
        }
        auto [p, ec] = std::from_chars(text_.data() + i, text_.data() + j, t.num);
        if (ec != std::errc() || p != text_.data() + j || !std::isfinite(t.num)) {
          return ErrorAt(i, StrCat("number ", Quote(text_.substr(i, j - i)), " is out of range"));
        }
        t.tok = Tok::kNumber;
        i = j;
      } else if (IsIdentStart(c)) {
        size_t j = i;
        while (j < n && IsIdentChar(text_[j])) ++j;
        t.tok = Tok::kIdent;
        t.str = std::string(text_.substr(i, j - i));
        i = j;
      } else if (c == '"' || c == '\'') {
        size_t j = i + 1;
        while (true) {
          if (j >= n || text_[j] == '\n') {
            return ErrorAt(
                i, StrCat("unclosed string: no closing ", c == '"' ? "\"" : "'", " on this line"));
          }
          const char d = text_[j];
          if (d == c) {
            ++j;
            break;
          }
          if (d == '\\') {
            const char e = j + 1 < n ? text_[j + 1] : '\0';
            switch (e) {
              case '\\':
                t.str.push_back('\\');
                break;
              case '\'':
                t.str.push_back('\'');
                break;
              case '"':
                t.str.push_back('"');
                break;
              case 'n':
                t.str.push_back('\n');
                break;
              case 't':
                t.str.push_back('\t');
                break;
              case 'r':
                t.str.push_back('\r');
                break;
              default:
                if (e == '\0' || e == '\n') {
                  return ErrorAt(i, "unclosed string: it ends with a backslash");
                }
                return ErrorAt(j, StrCat("unknown escape '\\", std::string_view(&e, 1),
                                         "' (known: \\\\ \\' \\\" \\n \\t \\r)"));
            }
            j += 2;
            continue;
          }
          t.str.push_back(d);
          ++j;
        }
        t.tok = Tok::kString;
        i = j;
      } else {
        size_t len = 1;
        switch (c) {
          case '(':
            t.tok = Tok::kLParen;
            break;
          case ')':
            t.tok = Tok::kRParen;
            break;
          case '[':
            t.tok = Tok::kLBracket;
            break;
          case ']':
            t.tok = Tok::kRBracket;
            break;
          case ',':
            t.tok = Tok::kComma;
            break;
          case '.':
            t.tok = Tok::kDot;
            break;
          case '+':
            t.tok = Tok::kPlus;
            break;
          case '-':
            t.tok = Tok::kMinus;
            break;
          case '*':
            t.tok = Tok::kStar;
            break;
          case '/':
            t.tok = Tok::kSlash;
            break;
          case '%':
            t.tok = Tok::kPercent;
            break;
          case '=':
            if (next != '=') return ErrorAt(i, "'=' is not an operator: compare with '=='");
            t.tok = Tok::kEq;
            len = 2;
            break;
          case '!':
            if (next != '=') return ErrorAt(i, "'!' is not an operator: negate with 'not'");
            t.tok = Tok::kNe;
            len = 2;
            break;
          case '<':
            if (next == '=') {
              t.tok = Tok::kLe;
              len = 2;
            } else {
              t.tok = Tok::kLt;
            }
            break;
          case '>':
            if (next == '=') {
              t.tok = Tok::kGe;
              len = 2;
            } else {
              t.tok = Tok::kGt;
            }
            break;
          case '&':
            return ErrorAt(i, "'&' is not an operator: write 'and'");
          case '|':
            return ErrorAt(i, "'|' is not an operator: write 'or'");
          default:
            if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7F) {
              return ErrorAt(i, StrCat("unexpected character '", std::string_view(&c, 1), "'"));
            }
            char hex[8];
            auto r = std::to_chars(hex, hex + sizeof hex, static_cast<unsigned char>(c), 16);
            return ErrorAt(i, StrCat("unexpected byte 0x", std::string_view(hex, r.ptr - hex)));
        }
        i += len;
      }
      t.end = i;
      toks_.push_back(std::move(t));
    }
  }

  // ------------------------------------------------------------ tokens

  const Token& Cur() const { return toks_[pos_]; }
  const Token& Peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  void Advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool IsWord(const Token& t, std::string_view w) const {
    return t.tok == Tok::kIdent && t.str == w;
  }
  bool IsKeyword(std::string_view w) const {
    return std::find(std::begin(kKeywords), std::end(kKeywords), w) != std::end(kKeywords);
  }

  // ------------------------------------------------------------ emission

  size_t Emit(Op op, int stack_delta, int32_t a = 0, uint8_t flag = 0, double num = 0) {
    height_ += stack_delta;
    if (height_ > kMaxStackSlots && !overflow_) {
      overflow_ = true;
      overflow_at_ = Cur().begin;
    }
    prog_->code.push_back(Instr{op, flag, a, num});
    return prog_->code.size() - 1;
  }
  void PatchJump(size_t at) { prog_->code[at].a = static_cast<int32_t>(prog_->code.size()); }

  // Nesting guard for the recursive descent: bounds the parser's own stack
  // (the fuzzer feeds it "((((((...").
  struct Nest {
    explicit Nest(int* d) : depth(d) { ++*depth; }
    ~Nest() { --*depth; }
    int* depth;
  };
  absl::Status CheckNesting(size_t at) const {
    if (depth_ > kMaxNesting) {
      return ErrorAt(at, StrCat("expression nested more than ", kMaxNesting, " levels deep"));
    }
    return absl::OkStatus();
  }

  // ------------------------------------------------------------ type checks

  absl::Status ExpectBool(const Typed& t, std::string_view op) const {
    if (t.kind == Kind::kBool || t.kind == Kind::kNull) return absl::OkStatus();
    std::string hint;
    if (t.kind == Kind::kNumber) hint = StrCat(" (compare it: ", Text(t), " > 0)");
    return ErrorAt(t.begin, StrCat("'", op, "' takes true/false values, but ", Quote(Text(t)),
                                   " is ", KindArticle(t.kind), hint));
  }

  absl::Status ExpectNumber(const Typed& t, std::string_view what) const {
    if (t.kind == Kind::kNumber || t.kind == Kind::kNull) return absl::OkStatus();
    return ErrorAt(
        t.begin, StrCat(what, " takes numbers, but ", Quote(Text(t)), " is ", KindArticle(t.kind)));
  }

  absl::Status ExpectString(const Typed& t, std::string_view what) const {
    if (t.kind == Kind::kString || t.kind == Kind::kNull) return absl::OkStatus();
    return ErrorAt(t.begin, StrCat(what, " takes a string, but ", Quote(Text(t)), " is ",
                                   KindArticle(t.kind)));
  }

  // A string literal compared with something that takes only known values
  // (an enum field, event.event_type) must be one of them: a typo there
  // would make a rule that never fires.
  absl::Status CheckDomain(const Typed& side, const std::string& literal, size_t at) const {
    if (side.domain < 0) return absl::OkStatus();
    const std::vector<std::string>& d = domains_[static_cast<size_t>(side.domain)];
    if (std::find(d.begin(), d.end(), literal) != d.end()) return absl::OkStatus();
    std::vector<std::string_view> cands(d.begin(), d.end());
    std::string hint = core::ClosestMatch(literal, cands);
    for (const std::string& v : d) {
      if (EqualsIgnoreCase(v, literal)) hint = v;
    }
    return ErrorAt(at, StrCat(Quote(literal), " is never a value of ", Text(side),
                              hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)"),
                              "; its values: ", StrJoin(d, ", ")));
  }

  // ------------------------------------------------------------ grammar

  // or := and ('or' and)*
  absl::Status ParseOr(Typed* out) {
    VIGIL_RETURN_IF_ERROR(ParseAnd(out));
    while (IsWord(Cur(), "or")) {
      VIGIL_RETURN_IF_ERROR(ExpectBool(*out, "or"));
      Advance();
      const size_t jump =
          Emit(Op::kOrJump, -1);  // the jump keeps the value; falling through pops it
      Typed r;
      VIGIL_RETURN_IF_ERROR(ParseAnd(&r));
      VIGIL_RETURN_IF_ERROR(ExpectBool(r, "or"));
      Emit(Op::kToBool, 0);
      PatchJump(jump);
      *out = MakeTyped(Kind::kBool, out->begin, r.end);
    }
    return absl::OkStatus();
  }

  // and := not ('and' not)*
  absl::Status ParseAnd(Typed* out) {
    VIGIL_RETURN_IF_ERROR(ParseNot(out));
    while (IsWord(Cur(), "and")) {
      VIGIL_RETURN_IF_ERROR(ExpectBool(*out, "and"));
      Advance();
      const size_t jump = Emit(Op::kAndJump, -1);
      Typed r;
      VIGIL_RETURN_IF_ERROR(ParseNot(&r));
      VIGIL_RETURN_IF_ERROR(ExpectBool(r, "and"));
      Emit(Op::kToBool, 0);
      PatchJump(jump);
      *out = MakeTyped(Kind::kBool, out->begin, r.end);
    }
    return absl::OkStatus();
  }

  // not := 'not' not | cmp
  absl::Status ParseNot(Typed* out) {
    if (!IsWord(Cur(), "not")) return ParseCmp(out);
    const size_t begin = Cur().begin;
    Nest nest(&depth_);
    VIGIL_RETURN_IF_ERROR(CheckNesting(begin));
    Advance();
    Typed x;
    VIGIL_RETURN_IF_ERROR(ParseNot(&x));
    VIGIL_RETURN_IF_ERROR(ExpectBool(x, "not"));
    Emit(Op::kNot, 0);
    *out = MakeTyped(Kind::kBool, begin, x.end);
    return absl::OkStatus();
  }

  static bool IsCmp(Tok t) {
    return t == Tok::kEq || t == Tok::kNe || t == Tok::kLt || t == Tok::kLe || t == Tok::kGt ||
           t == Tok::kGe;
  }
  bool AtIn() const {
    return IsWord(Cur(), "in") || (IsWord(Cur(), "not") && IsWord(Peek(), "in"));
  }

  // cmp := add [ (== != < <= > >=) add | 'in' list | 'not' 'in' list ]
  absl::Status ParseCmp(Typed* out) {
    Typed l;
    VIGIL_RETURN_IF_ERROR(ParseAdd(&l));
    if (IsCmp(Cur().tok)) {
      const Token& op_tok = Cur();
      const size_t op_at = op_tok.begin;
      const std::string op_text(text_.substr(op_tok.begin, op_tok.end - op_tok.begin));
      Cmp cmp = Cmp::kEq;
      switch (op_tok.tok) {
        case Tok::kEq:
          cmp = Cmp::kEq;
          break;
        case Tok::kNe:
          cmp = Cmp::kNe;
          break;
        case Tok::kLt:
          cmp = Cmp::kLt;
          break;
        case Tok::kLe:
          cmp = Cmp::kLe;
          break;
        case Tok::kGt:
          cmp = Cmp::kGt;
          break;
        default:
          cmp = Cmp::kGe;
          break;
      }
      Advance();
      Typed r;
      VIGIL_RETURN_IF_ERROR(ParseAdd(&r));
      for (const Typed* side : {&l, &r}) {
        if (side->kind == Kind::kNull) {
          return ErrorAt(side->begin,
                         StrCat("comparing with null is always false (any comparison with null "
                                "is); to treat a missing value as a default, write coalesce(x, "
                                "default) ",
                                op_text, " ..."));
        }
      }
      if (l.kind != r.kind) {
        return ErrorAt(op_at, StrCat("cannot compare ", KindArticle(l.kind), " (", Quote(Text(l)),
                                     ") with ", KindArticle(r.kind), " (", Quote(Text(r)), ")"));
      }
      if (l.kind == Kind::kBool && cmp != Cmp::kEq && cmp != Cmp::kNe) {
        return ErrorAt(op_at,
                       StrCat("'", op_text, "' does not apply to bools (only == and != do)"));
      }
      if (l.kind == Kind::kString && (cmp == Cmp::kEq || cmp == Cmp::kNe)) {
        if (r.string_literal) VIGIL_RETURN_IF_ERROR(CheckDomain(l, r.literal, r.begin));
        if (l.string_literal) VIGIL_RETURN_IF_ERROR(CheckDomain(r, l.literal, l.begin));
      }
      const Op op = l.kind == Kind::kNumber   ? Op::kCmpNum
                    : l.kind == Kind::kString ? Op::kCmpStr
                                              : Op::kCmpBool;
      Emit(op, -1, 0, static_cast<uint8_t>(cmp));
      *out = MakeTyped(Kind::kBool, l.begin, r.end);
    } else if (AtIn()) {
      const bool negate = IsWord(Cur(), "not");
      const size_t op_at = Cur().begin;
      Advance();
      if (negate) Advance();
      VIGIL_RETURN_IF_ERROR(ParseInList(l, negate, op_at, out));
    } else {
      *out = std::move(l);
      return absl::OkStatus();
    }
    if (IsCmp(Cur().tok) || AtIn()) {
      return ErrorAt(Cur().begin,
                     "comparisons cannot be chained: write 'a < b and b < c', or use parentheses");
    }
    return absl::OkStatus();
  }

  // The right side of `in`: a literal list or lists.<name>.
  absl::Status ParseInList(const Typed& l, bool negate, size_t op_at, Typed* out) {
    const char* op = negate ? "'not in'" : "'in'";
    if (l.kind == Kind::kNull) {
      return ErrorAt(l.begin,
                     StrCat("null is never in a list, so ", op, " with null is always false"));
    }
    if (l.kind == Kind::kBool) {
      return ErrorAt(l.begin, StrCat(op, " takes a number or a string on its left, but ",
                                     Quote(Text(l)), " is a bool"));
    }
    const uint8_t flag = negate ? 1 : 0;
    if (Cur().tok == Tok::kLBracket) {
      const size_t open = Cur().begin;
      Advance();
      std::vector<double> numbers;
      StringSet strings;
      while (Cur().tok != Tok::kRBracket) {
        const size_t at = Cur().begin;
        bool minus = false;
        if (Cur().tok == Tok::kMinus && Peek().tok == Tok::kNumber) {
          minus = true;
          Advance();
        }
        const Token& e = Cur();
        if (e.tok == Tok::kEnd) return ErrorAt(open, "unclosed '['");
        if (e.tok != Tok::kNumber && e.tok != Tok::kString) {
          if (IsWord(e, "null")) return ErrorAt(at, "null in a list never matches; leave it out");
          return ErrorAt(
              at, StrCat("list elements are literal numbers or strings; found ", Describe(e)));
        }
        const Kind ek = e.tok == Tok::kNumber ? Kind::kNumber : Kind::kString;
        if (ek != l.kind) {
          return ErrorAt(at, StrCat(Quote(Text(l)), " is ", KindArticle(l.kind),
                                    " but this list element is ", KindArticle(ek)));
        }
        if (ek == Kind::kNumber) {
          numbers.push_back(minus ? -e.num : e.num);
        } else {
          VIGIL_RETURN_IF_ERROR(CheckDomain(l, e.str, at));
          strings.insert(e.str);
        }
        Advance();
        if (Cur().tok == Tok::kComma) {
          Advance();
        } else if (Cur().tok != Tok::kRBracket) {
          if (Cur().tok == Tok::kEnd) return ErrorAt(open, "unclosed '['");
          return ErrorAt(Cur().begin,
                         StrCat("expected ',' or ']' in the list, found ", Describe(Cur())));
        }
      }
      const size_t close_end = Cur().end;
      Advance();
      if (l.kind == Kind::kNumber) {
        std::sort(numbers.begin(), numbers.end());
        prog_->number_sets.push_back(std::move(numbers));
        Emit(Op::kInNum, 0, static_cast<int32_t>(prog_->number_sets.size() - 1), flag);
      } else {
        prog_->string_sets.push_back(std::move(strings));
        Emit(Op::kInStr, 0, static_cast<int32_t>(prog_->string_sets.size() - 1), flag);
      }
      *out = MakeTyped(Kind::kBool, l.begin, close_end);
      return absl::OkStatus();
    }
    if (IsWord(Cur(), "lists") && Peek().tok == Tok::kDot) {
      const size_t at = Cur().begin;
      std::string name;
      size_t end = 0;
      VIGIL_RETURN_IF_ERROR(ParseDottedName(&name, &end));
      std::shared_ptr<const StringSet> list = b_.lists != nullptr ? b_.lists->Find(name) : nullptr;
      if (list == nullptr) {
        std::string hint;
        if (b_.lists != nullptr) {
          const std::vector<std::string> names = b_.lists->Names();
          hint =
              core::ClosestMatch(name, std::vector<std::string_view>(names.begin(), names.end()));
        }
        return ErrorAt(at,
                       StrCat("unknown list '", name, "'",
                              hint.empty() ? "" : StrCat(" (did you mean 'lists.", hint, "'?)")));
      }
      if (l.kind != Kind::kString) {
        return ErrorAt(l.begin, StrCat(op, " a named list takes a string on its left, but ",
                                       Quote(Text(l)), " is ", KindArticle(l.kind)));
      }
      prog_->lists.push_back(std::move(list));
      Emit(Op::kInList, 0, static_cast<int32_t>(prog_->lists.size() - 1), flag);
      *out = MakeTyped(Kind::kBool, l.begin, end);
      return absl::OkStatus();
    }
    return ErrorAt(Cur().tok == Tok::kEnd ? op_at : Cur().begin,
                   StrCat("expected a list after ", op, ": [\"a\", \"b\"] or lists.<name>; found ",
                          Describe(Cur())));
  }

  // add := mul (('+' | '-') mul)*
  absl::Status ParseAdd(Typed* out) {
    VIGIL_RETURN_IF_ERROR(ParseMul(out));
    while (Cur().tok == Tok::kPlus || Cur().tok == Tok::kMinus) {
      const bool plus = Cur().tok == Tok::kPlus;
      const size_t op_at = Cur().begin;
      Advance();
      Typed r;
      VIGIL_RETURN_IF_ERROR(ParseMul(&r));
      VIGIL_RETURN_IF_ERROR(CheckArithmetic(*out, r, plus ? "+" : "-", op_at));
      Emit(plus ? Op::kAdd : Op::kSub, -1);
      *out = MakeTyped(Kind::kNumber, out->begin, r.end);
    }
    return absl::OkStatus();
  }

  // mul := unary (('*' | '/' | '%') unary)*
  absl::Status ParseMul(Typed* out) {
    VIGIL_RETURN_IF_ERROR(ParseUnary(out));
    while (Cur().tok == Tok::kStar || Cur().tok == Tok::kSlash || Cur().tok == Tok::kPercent) {
      const Tok t = Cur().tok;
      const size_t op_at = Cur().begin;
      Advance();
      Typed r;
      VIGIL_RETURN_IF_ERROR(ParseUnary(&r));
      VIGIL_RETURN_IF_ERROR(CheckArithmetic(*out, r,
                                            t == Tok::kStar    ? "*"
                                            : t == Tok::kSlash ? "/"
                                                               : "%",
                                            op_at));
      Emit(t == Tok::kStar ? Op::kMul : t == Tok::kSlash ? Op::kDiv : Op::kMod, -1);
      *out = MakeTyped(Kind::kNumber, out->begin, r.end);
    }
    return absl::OkStatus();
  }

  absl::Status CheckArithmetic(const Typed& l, const Typed& r, std::string_view op,
                               size_t op_at) const {
    for (const Typed* side : {&l, &r}) {
      if (side->kind == Kind::kNumber || side->kind == Kind::kNull) continue;
      if (op == "+" && side->kind == Kind::kString) {
        return ErrorAt(op_at, StrCat("'+' adds numbers; strings cannot be joined (",
                                     Quote(Text(*side)), " is a string)"));
      }
      return ErrorAt(op_at, StrCat("'", op, "' takes numbers, but ", Quote(Text(*side)), " is ",
                                   KindArticle(side->kind)));
    }
    return absl::OkStatus();
  }

  // unary := '-' unary | primary
  absl::Status ParseUnary(Typed* out) {
    if (Cur().tok != Tok::kMinus) return ParsePrimary(out);
    const size_t begin = Cur().begin;
    Nest nest(&depth_);
    VIGIL_RETURN_IF_ERROR(CheckNesting(begin));
    Advance();
    const size_t first = prog_->code.size();
    Typed x;
    VIGIL_RETURN_IF_ERROR(ParseUnary(&x));
    VIGIL_RETURN_IF_ERROR(ExpectNumber(x, "'-'"));
    if (prog_->code.size() == first + 1 && prog_->code.back().op == Op::kNumber) {
      prog_->code.back().num = -prog_->code.back().num;  // a negative literal
    } else {
      Emit(Op::kNeg, 0);
    }
    *out = MakeTyped(Kind::kNumber, begin, x.end);
    return absl::OkStatus();
  }

  // name := ident ('.' ident)*, from the current identifier; keywords may
  // follow a dot (event.in is a field called "in").
  absl::Status ParseDottedName(std::string* name, size_t* end) {
    const std::string root = Cur().str;
    *end = Cur().end;
    Advance();
    name->clear();
    while (Cur().tok == Tok::kDot) {
      const size_t dot = Cur().begin;
      Advance();
      if (Cur().tok != Tok::kIdent || Cur().begin != dot + 1) {
        return ErrorAt(Cur().tok == Tok::kEnd ? dot : Cur().begin,
                       StrCat("expected a name right after '", root, ".'"));
      }
      if (!name->empty()) name->push_back('.');
      name->append(Cur().str);
      *end = Cur().end;
      Advance();
    }
    return absl::OkStatus();
  }

  // primary := number | string | true | false | null | '(' or ')' | name | call
  absl::Status ParsePrimary(Typed* out) {
    const Token& t = Cur();
    out->begin = t.begin;
    out->end = t.end;
    switch (t.tok) {
      case Tok::kNumber:
        Emit(Op::kNumber, 1, 0, 0, t.num);
        out->kind = Kind::kNumber;
        Advance();
        return absl::OkStatus();
      case Tok::kString:
        prog_->strings.push_back(t.str);
        Emit(Op::kString, 1, static_cast<int32_t>(prog_->strings.size() - 1));
        out->kind = Kind::kString;
        out->string_literal = true;
        out->literal = t.str;
        Advance();
        return absl::OkStatus();
      case Tok::kLParen: {
        Nest nest(&depth_);
        VIGIL_RETURN_IF_ERROR(CheckNesting(t.begin));
        const size_t open = t.begin;
        Advance();
        if (Cur().tok == Tok::kRParen) return ErrorAt(Cur().begin, "empty parentheses");
        VIGIL_RETURN_IF_ERROR(ParseOr(out));
        if (Cur().tok != Tok::kRParen) {
          if (Cur().tok == Tok::kEnd) return ErrorAt(open, "unclosed '('");
          return ErrorAt(Cur().begin, StrCat("expected ')' to close the '(' at ", LineCol(open),
                                             ", found ", Describe(Cur())));
        }
        // Parentheses keep the inner expression's type (and literal-ness,
        // for checks such as domains).
        out->begin = open;
        out->end = Cur().end;
        Advance();
        return absl::OkStatus();
      }
      case Tok::kLBracket:
        return ErrorAt(t.begin, "a list [...] may only follow 'in' or 'not in'");
      case Tok::kIdent:
        return ParseName(out);
      case Tok::kEnd:
        return ErrorAt(t.begin, "unexpected end of expression: a value is missing");
      default:
        return ErrorAt(t.begin, StrCat("unexpected ", Describe(t)));
    }
  }

  absl::Status ParseName(Typed* out) {
    const Token& t = Cur();
    const size_t begin = t.begin;
    const std::string word = t.str;
    if (word == "true" || word == "false") {
      Emit(Op::kBool, 1, 0, word == "true" ? 1 : 0);
      *out = MakeTyped(Kind::kBool, begin, t.end);
      Advance();
      return absl::OkStatus();
    }
    if (word == "null") {
      Emit(Op::kNull, 1);
      *out = MakeTyped(Kind::kNull, begin, t.end);
      Advance();
      return absl::OkStatus();
    }
    if (IsKeyword(word)) return ErrorAt(begin, StrCat("unexpected '", word, "'"));
    if (Peek().tok == Tok::kLParen) return ParseCall(out);
    if ((word == "event" || word == "features" || word == "lists" || word == "model") &&
        Peek().tok == Tok::kDot) {
      std::string name;
      size_t end = 0;
      VIGIL_RETURN_IF_ERROR(ParseDottedName(&name, &end));
      if (word == "model") {
        if (name != "score") {
          return ErrorAt(begin, StrCat("unknown name 'model.", name, "'; the model offers model.score"));
        }
        if (!b_.score) {
          return ErrorAt(begin, "model.score can be read only by the policy's rules (after the model)");
        }
        Emit(Op::kScore, 1);
        *out = MakeTyped(Kind::kNumber, begin, end);
        return absl::OkStatus();
      }
      if (word == "lists") {
        return ErrorAt(begin, StrCat("lists.", name, " may only follow 'in' or 'not in'"));
      }
      *out = MakeTyped(Kind::kNull, begin, end);
      if (word == "event") return ResolveField(name, begin, out);
      return ResolveFeature(name, begin, out);
    }
    if (word == "event" || word == "features" || word == "lists" || word == "model") {
      return ErrorAt(t.end, StrCat("expected '.' and a name after '", word, "'"));
    }
    // An unknown bare name: say how to write what it probably means.
    if (b_.schema != nullptr) {
      for (const event::EventTypeSpec& et : b_.schema->types) {
        if (et.Find(word) != nullptr || word == "time" || word == "event_type") {
          return ErrorAt(
              begin, StrCat("unknown name '", word, "'; event fields are written event.", word));
        }
      }
    }
    if (b_.lists != nullptr && b_.lists->Find(word) != nullptr) {
      return ErrorAt(begin, StrCat("unknown name '", word, "'; lists are written lists.", word,
                                   ", after 'in'"));
    }
    if (b_.feature && b_.feature(word).has_value()) {
      return ErrorAt(begin,
                     StrCat("unknown name '", word, "'; features are written features.", word));
    }
    std::vector<std::string_view> cands = {"event", "features", "lists"};
    if (b_.score) cands.push_back("model");
    for (std::string_view k : kKeywords) cands.push_back(k);
    // Very short names are close to everything: no hint for them.
    const std::string hint = word.size() > 2 ? core::ClosestMatch(word, cands) : "";
    return ErrorAt(begin, StrCat("unknown name '", word, "'",
                                 hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)"),
                                 "; names are event.<field>, features.<name>, lists.<name>",
                                 b_.score ? ", model.score" : ""));
  }

  absl::Status ResolveField(const std::string& name, size_t begin, Typed* out) {
    if (b_.schema == nullptr) {
      return ErrorAt(begin, "event fields cannot be read here (no event schema)");
    }
    const event::Schema& s = *b_.schema;
    prog_->event_fields_read.push_back(name);
    if (name == "time") {
      Emit(Op::kTime, 1);
      out->kind = Kind::kNumber;
      return absl::OkStatus();
    }
    if (name == "event_type") {
      Emit(Op::kEventType, 1);
      out->kind = Kind::kString;
      std::vector<std::string> types;
      for (const event::EventTypeSpec& t : s.types) types.push_back(t.name);
      domains_.push_back(std::move(types));
      out->domain = static_cast<int>(domains_.size() - 1);
      return absl::OkStatus();
    }
    if (name == "event_id") {
      Emit(Op::kEventId, 1);
      out->kind = Kind::kString;
      return absl::OkStatus();
    }
    auto cached = field_offsets_.find(name);
    int32_t offset;
    const event::EventTypeSpec* first_type = nullptr;
    Kind kind = Kind::kNull;
    std::vector<std::string> domain;
    bool restricted = true;  // every type restricts the field to listed strings
    // The built-in label type comes last and gives way: a user type may
    // call a field `value` or `kind` with its own type.
    std::vector<const event::EventTypeSpec*> order;
    for (const event::EventTypeSpec& t : s.types) {
      if (!t.is_label) order.push_back(&t);
    }
    for (const event::EventTypeSpec& t : s.types) {
      if (t.is_label) order.push_back(&t);
    }
    std::vector<const event::EventTypeSpec*> used;
    for (const event::EventTypeSpec* tp : order) {
      const event::EventTypeSpec& t = *tp;
      const event::FieldSpec* f = t.Find(name);
      if (f == nullptr) continue;
      const Kind k = KindOfField(f->type);
      if (t.is_label && first_type != nullptr && k != kind) continue;
      used.push_back(tp);
      if (first_type != nullptr && k != kind) {
        return ErrorAt(begin, StrCat("event.", name, " is ", KindArticle(kind), " in event type '",
                                     first_type->name, "' but ", KindArticle(k), " in '", t.name,
                                     "'; an expression needs one type"));
      }
      if (first_type == nullptr) {
        first_type = &t;
        kind = k;
      }
      if (k != Kind::kString || f->allowed_strings.empty()) {
        restricted = false;
      } else {
        for (const std::string& v : f->allowed_strings) {
          if (std::find(domain.begin(), domain.end(), v) == domain.end()) domain.push_back(v);
        }
      }
    }
    if (first_type == nullptr) {
      prog_->event_fields_read.pop_back();
      std::vector<std::string_view> cands = {"time", "event_type", "event_id"};
      for (const event::EventTypeSpec& t : s.types) {
        for (const event::FieldSpec& f : t.fields) cands.push_back(f.name);
      }
      const std::string hint = core::ClosestMatch(name, cands);
      return ErrorAt(begin,
                     StrCat("unknown event field '", name, "'",
                            hint.empty() ? "" : StrCat(" (did you mean 'event.", hint, "'?)")));
    }
    if (cached != field_offsets_.end()) {
      offset = cached->second;
    } else {
      offset = static_cast<int32_t>(prog_->field_maps.size());
      prog_->field_maps.resize(prog_->field_maps.size() + s.types.size(), -1);
      for (const event::EventTypeSpec* tp : used) {
        const event::EventTypeSpec& t = *tp;
        const event::FieldSpec* f = t.Find(name);
        prog_->field_maps[static_cast<size_t>(offset + t.index)] =
            (f->index << 3) | static_cast<int32_t>(f->type);
      }
      field_offsets_.emplace(name, offset);
    }
    Emit(Op::kField, 1, offset);
    out->kind = kind;
    if (restricted && kind == Kind::kString) {
      std::sort(domain.begin(), domain.end());
      domains_.push_back(std::move(domain));
      out->domain = static_cast<int>(domains_.size() - 1);
    }
    return absl::OkStatus();
  }

  absl::Status ResolveFeature(const std::string& name, size_t begin, Typed* out) {
    if (!b_.feature) return ErrorAt(begin, "features cannot be read here");
    const std::optional<int> idx = b_.feature(name);
    if (idx == Bindings::kSelf) {
      return ErrorAt(begin, StrCat("feature '", name,
                                   "' reads itself: its value is what this expression computes"));
    }
    if (!idx.has_value() || *idx < 0) {
      return ErrorAt(begin,
                     StrCat("unknown feature '", name, "' (or one this expression may not read)"));
    }
    prog_->features_read.push_back(*idx);
    Emit(Op::kFeature, 1, *idx);
    out->kind = Kind::kNumber;
    return absl::OkStatus();
  }

  // Parses `(` args `)` of function `f`, with `at_comma(i)` called before
  // argument i > 0 and `after(i, arg)` after each argument.
  template <typename AtComma, typename After>
  absl::Status ParseArgs(const FunctionSpec& f, size_t name_at, size_t* end, int* count,
                         AtComma at_comma, After after) {
    const size_t open = Cur().begin;
    Advance();  // '('
    *count = 0;
    if (Cur().tok != Tok::kRParen) {
      while (true) {
        if (*count > 0) VIGIL_RETURN_IF_ERROR(at_comma(*count));
        Typed a;
        VIGIL_RETURN_IF_ERROR(ParseOr(&a));
        VIGIL_RETURN_IF_ERROR(after(*count, a));
        ++*count;
        if (Cur().tok == Tok::kComma) {
          Advance();
          continue;
        }
        if (Cur().tok == Tok::kRParen) break;
        if (Cur().tok == Tok::kEnd) return ErrorAt(open, StrCat("unclosed '(' of ", f.name, "()"));
        return ErrorAt(Cur().begin, StrCat("expected ',' or ')' in the arguments of ", f.name,
                                           "(), found ", Describe(Cur())));
      }
    }
    *end = Cur().end;
    Advance();  // ')'
    if (*count < f.min_args || (f.max_args >= 0 && *count > f.max_args)) {
      std::string want;
      if (f.min_args == f.max_args) {
        want = ArgCount(f.min_args);
      } else {
        want = StrCat("at least ", ArgCount(f.min_args));
      }
      return ErrorAt(name_at, StrCat(f.name, "() takes ", want, ", found ", *count));
    }
    return absl::OkStatus();
  }

  absl::Status ParseCall(Typed* out) {
    const size_t name_at = Cur().begin;
    const std::string name = Cur().str;
    const FunctionSpec* f = nullptr;
    for (const FunctionSpec& s : kFunctions) {
      if (s.name == name) f = &s;
    }
    if (f == nullptr) {
      if (name == "lower" || name == "upper") {
        return ErrorAt(name_at, StrCat(name,
                                       "() is not provided: 'in lists.<name>' already "
                                       "compares case-insensitively"));
      }
      std::vector<std::string_view> cands;
      for (const FunctionSpec& s : kFunctions) cands.push_back(s.name);
      const std::string hint = core::ClosestMatch(name, cands);
      return ErrorAt(name_at, StrCat("unknown function '", name, "'",
                                     hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)")));
    }
    Nest nest(&depth_);
    VIGIL_RETURN_IF_ERROR(CheckNesting(name_at));
    Advance();  // the name; now at '('
    const std::string fn = StrCat(name, "()");
    *out = MakeTyped(Kind::kNumber, name_at, 0);
    int count = 0;
    auto no_comma = [](int) { return absl::OkStatus(); };

    if (name == "lookup") return ParseLookup(*f, name_at, out);
    if (name == "ip_prefix") return ParseIpPrefix(*f, name_at, out);

    if (name == "coalesce") {
      std::vector<size_t> jumps;
      Kind kind = Kind::kNull;
      VIGIL_RETURN_IF_ERROR(ParseArgs(
          *f, name_at, &out->end, &count,
          [&](int) {
            jumps.push_back(Emit(Op::kCoalesceJump, -1));
            return absl::OkStatus();
          },
          [&](int, const Typed& a) {
            if (a.kind == Kind::kNull) return absl::OkStatus();
            if (kind != Kind::kNull && a.kind != kind) {
              return ErrorAt(a.begin, StrCat("coalesce() takes values of one type, but ",
                                             Quote(Text(a)), " is ", KindArticle(a.kind),
                                             " and an earlier argument ", KindArticle(kind)));
            }
            kind = a.kind;
            return absl::OkStatus();
          }));
      for (size_t j : jumps) PatchJump(j);
      out->kind = kind;
      return absl::OkStatus();
    }
    if (name == "min" || name == "max") {
      const Op op = name == "min" ? Op::kMin : Op::kMax;
      return ParseArgs(*f, name_at, &out->end, &count, no_comma, [&](int i, const Typed& a) {
        VIGIL_RETURN_IF_ERROR(ExpectNumber(a, fn));
        if (i > 0) Emit(op, -1);  // pairwise: two stack slots whatever the count
        return absl::OkStatus();
      });
    }

    std::vector<Typed> args;
    VIGIL_RETURN_IF_ERROR(
        ParseArgs(*f, name_at, &out->end, &count, no_comma, [&](int, const Typed& a) {
          args.push_back(a);
          return absl::OkStatus();
        }));
    if (name == "ratio") {
      for (const Typed& a : args) VIGIL_RETURN_IF_ERROR(ExpectNumber(a, fn));
      Emit(Op::kRatio, -2);
    } else if (name == "abs" || name == "log1p") {
      VIGIL_RETURN_IF_ERROR(ExpectNumber(args[0], fn));
      Emit(name == "abs" ? Op::kAbs : Op::kLog1p, 0);
    } else if (name == "hour_of_day" || name == "day_of_week" || name == "is_weekend") {
      if (args[0].kind != Kind::kNumber && args[0].kind != Kind::kNull) {
        return ErrorAt(args[0].begin,
                       StrCat(fn,
                              " takes a time in ms since the epoch (a number, "
                              "such as event.time), but ",
                              Quote(Text(args[0])), " is ", KindArticle(args[0].kind)));
      }
      if (name == "is_weekend") {
        Emit(Op::kIsWeekend, 0);
        out->kind = Kind::kBool;
      } else {
        Emit(name == "hour_of_day" ? Op::kHourOfDay : Op::kDayOfWeek, 0);
      }
    } else if (name == "email_domain") {
      VIGIL_RETURN_IF_ERROR(ExpectString(args[0], fn));
      Emit(Op::kEmailDomain, 0);
      out->kind = Kind::kString;
    }
    return absl::OkStatus();
  }

  // lookup("table", key): the table name must be a literal.
  absl::Status ParseLookup(const FunctionSpec& f, size_t name_at, Typed* out) {
    const size_t open = Cur().begin;
    Advance();  // '('
    if (Cur().tok != Tok::kString) {
      return ErrorAt(Cur().tok == Tok::kEnd ? open : Cur().begin,
                     "lookup() takes a table name in quotes first: lookup(\"bin_country\", key)");
    }
    const size_t table_at = Cur().begin;
    const std::string table_name = Cur().str;
    std::shared_ptr<const Table> table =
        b_.tables != nullptr ? b_.tables->Find(table_name) : nullptr;
    if (table == nullptr) {
      std::string hint;
      if (b_.tables != nullptr) {
        const std::vector<std::string> names = b_.tables->Names();
        hint = core::ClosestMatch(table_name,
                                  std::vector<std::string_view>(names.begin(), names.end()));
      }
      return ErrorAt(table_at, StrCat("unknown table '", table_name, "'",
                                      hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)")));
    }
    Advance();
    if (Cur().tok != Tok::kComma) {
      if (Cur().tok == Tok::kEnd) return ErrorAt(open, "unclosed '(' of lookup()");
      return ErrorAt(name_at, "lookup() takes 2 arguments: lookup(\"table\", key)");
    }
    Advance();
    Typed key;
    VIGIL_RETURN_IF_ERROR(ParseOr(&key));
    if (Cur().tok != Tok::kRParen) {
      if (Cur().tok == Tok::kEnd) return ErrorAt(open, "unclosed '(' of lookup()");
      if (Cur().tok == Tok::kComma)
        return ErrorAt(name_at, "lookup() takes 2 arguments, found more");
      return ErrorAt(Cur().begin,
                     StrCat("expected ')' after the key of lookup(), found ", Describe(Cur())));
    }
    out->end = Cur().end;
    Advance();
    const auto idx = static_cast<int32_t>(prog_->tables.size());
    if (table->kind() == Table::Kind::kPrefix) {
      if (key.kind != Kind::kString && key.kind != Kind::kNumber && key.kind != Kind::kNull) {
        return ErrorAt(key.begin, StrCat("prefix table '", table_name,
                                         "' takes a string of digits or a number, but ",
                                         Quote(Text(key)), " is ", KindArticle(key.kind)));
      }
      Emit(key.kind == Kind::kNumber ? Op::kLookupPrefixNum : Op::kLookupPrefix, 0, idx);
    } else {
      if (key.kind != Kind::kString && key.kind != Kind::kNull) {
        return ErrorAt(key.begin, StrCat("ip_range table '", table_name,
                                         "' takes an IPv4 address string, but ", Quote(Text(key)),
                                         " is ", KindArticle(key.kind)));
      }
      Emit(Op::kLookupIp, 0, idx);
    }
    prog_->tables.push_back(std::move(table));
    out->kind = Kind::kString;
    (void)f;
    return absl::OkStatus();
  }

  // ip_prefix(ip, 24 | 16): the length must be a literal.
  absl::Status ParseIpPrefix(const FunctionSpec& f, size_t name_at, Typed* out) {
    const size_t open = Cur().begin;
    Advance();  // '('
    if (Cur().tok == Tok::kRParen) {
      return ErrorAt(name_at, "ip_prefix() takes 2 arguments, found 0: ip_prefix(ip, 24)");
    }
    Typed ip;
    VIGIL_RETURN_IF_ERROR(ParseOr(&ip));
    VIGIL_RETURN_IF_ERROR(ExpectString(ip, "ip_prefix()"));
    if (Cur().tok != Tok::kComma) {
      if (Cur().tok == Tok::kEnd) return ErrorAt(open, "unclosed '(' of ip_prefix()");
      if (Cur().tok == Tok::kRParen) {
        return ErrorAt(name_at, "ip_prefix() takes 2 arguments, found 1: ip_prefix(ip, 24)");
      }
      return ErrorAt(Cur().begin, StrCat("expected ',' in the arguments of ip_prefix(), found ",
                                         Describe(Cur())));
    }
    Advance();
    const Token& len = Cur();
    if (len.tok != Tok::kNumber || (len.num != 24 && len.num != 16)) {
      return ErrorAt(
          len.tok == Tok::kEnd ? open : len.begin,
          StrCat("ip_prefix() takes 24 or 16 as its prefix length, found ", Describe(len)));
    }
    const auto bits = static_cast<uint8_t>(len.num);
    Advance();
    if (Cur().tok != Tok::kRParen) {
      if (Cur().tok == Tok::kEnd) return ErrorAt(open, "unclosed '(' of ip_prefix()");
      if (Cur().tok == Tok::kComma)
        return ErrorAt(name_at, "ip_prefix() takes 2 arguments, found more");
      return ErrorAt(Cur().begin,
                     StrCat("expected ')' after the prefix length, found ", Describe(Cur())));
    }
    out->end = Cur().end;
    Advance();
    Emit(Op::kIpPrefix, 0, 0, bits);
    out->kind = Kind::kString;
    (void)f;
    return absl::OkStatus();
  }

  std::string_view text_;
  const Bindings& b_;
  const SourcePos& where_;
  std::shared_ptr<Program> prog_;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int height_ = 0;
  bool overflow_ = false;
  size_t overflow_at_ = 0;
  std::vector<std::vector<std::string>> domains_;
  StringMap<int32_t> field_offsets_;
};

// ------------------------------------------------------------------ evaluator

// A stack slot: a Value without initialisers, so that the stack array costs
// nothing to set up.
struct Slot {
  Kind kind;
  bool b;
  double num;
  const char* p;
  size_t n;
};

inline void SetNull(Slot* s) { s->kind = Kind::kNull; }
// Results that are not finite numbers (0/0, overflow, log1p(-2)) are null:
// NaN means missing everywhere in vigil.
inline void SetNum(Slot* s, double v) {
  if (std::isfinite(v)) {
    s->kind = Kind::kNumber;
    s->num = v;
  } else {
    s->kind = Kind::kNull;
  }
}
inline void SetBool(Slot* s, bool v) {
  s->kind = Kind::kBool;
  s->b = v;
}
inline void SetStr(Slot* s, std::string_view v) {
  s->kind = Kind::kString;
  s->p = v.data();
  s->n = v.size();
}
inline std::string_view Str(const Slot& s) { return std::string_view(s.p, s.n); }
inline bool IsTrue(const Slot& s) { return s.kind == Kind::kBool && s.b; }

inline bool Compare(Cmp c, int r) {
  switch (c) {
    case Cmp::kEq:
      return r == 0;
    case Cmp::kNe:
      return r != 0;
    case Cmp::kLt:
      return r < 0;
    case Cmp::kLe:
      return r <= 0;
    case Cmp::kGt:
      return r > 0;
    case Cmp::kGe:
      return r >= 0;
  }
  return false;
}

// Milliseconds as an int64, floored; false when out of range.
inline bool ToMs(const Slot& s, int64_t* ms) {
  if (s.kind != Kind::kNumber || !(std::fabs(s.num) < 9.0e18)) return false;
  // Truncation floors what is not negative (event times): std::floor (a
  // libm call without SSE4.1) only for the rest. (Not "truncate, then one
  // down when the integer read back is above": GCC 12 at -O2 drops that
  // test here, a test below caught it.)
  *ms = s.num >= 0 ? static_cast<int64_t>(s.num) : static_cast<int64_t>(std::floor(s.num));
  return true;
}

inline int64_t FloorMod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return r < 0 ? r + b : r;
}

// Monday 0 .. Sunday 6; 1970-01-01 was a Thursday.
inline int DayOfWeek(int64_t ms) {
  int64_t rem;
  return static_cast<int>(FloorMod(core::DayOf(ms, &rem) + 3, 7));
}

}  // namespace

// ------------------------------------------------------------------ Expr

namespace {
const std::shared_ptr<const Program>& NullProgram() {
  static const auto* p = [] {
    auto prog = std::make_shared<Program>();
    prog->code.push_back(Instr{Op::kNull});
    return new std::shared_ptr<const Program>(std::move(prog));
  }();
  return *p;
}
}  // namespace

Expr::Expr() : prog_(NullProgram()) {}

absl::StatusOr<Expr> Expr::Compile(std::string_view text, const Bindings& b,
                                   const SourcePos& where) {
  Compiler c(text, b, where);
  VIGIL_ASSIGN_OR_RETURN(std::shared_ptr<const Program> p, c.Run());
  return Expr(std::move(p));
}

Kind Expr::result_kind() const { return prog_->kind; }
const std::vector<int>& Expr::features_read() const { return prog_->features_read; }
const std::vector<std::string>& Expr::event_fields_read() const { return prog_->event_fields_read; }
const std::string& Expr::text() const { return prog_->text; }

// The value of field list `a` (Instr::a of kField) in `rec` and its type,
// or nullptr when the record's type has no such field or it is not present.
static const event::Value* PresentField(const Program& p, int32_t a, const event::Record& rec,
                                        event::FieldType* type) {
  const event::EventTypeSpec* t = rec.type;
  if (t == nullptr || t->index < 0 || t->index >= p.num_types) return nullptr;
  const int32_t e = p.field_maps[static_cast<size_t>(a + t->index)];
  if (e < 0) return nullptr;
  const auto fi = static_cast<size_t>(e >> 3);
  if (fi >= rec.values.size()) return nullptr;
  const event::Value& v = rec.values[fi];
  if (v.state != event::Value::State::kPresent) return nullptr;
  *type = static_cast<event::FieldType>(e & 7);
  return &v;
}

Value Expr::Eval(const event::Record& rec, const double* features, double score) const noexcept {
  const Program& p = *prog_;
  Slot st[kMaxStackSlots];
  int sp = -1;  // index of the top slot
  const Instr* const code = p.code.data();
  const size_t n = p.code.size();
  size_t pc = 0;
  while (pc < n) {
    const Instr& in = code[pc++];
    switch (in.op) {
      case Op::kNull:
        SetNull(&st[++sp]);
        break;
      case Op::kNumber:
        st[++sp].kind = Kind::kNumber;
        st[sp].num = in.num;
        break;
      case Op::kBool:
        SetBool(&st[++sp], in.flag != 0);
        break;
      case Op::kString:
        SetStr(&st[++sp], p.strings[static_cast<size_t>(in.a)]);
        break;
      case Op::kField: {
        Slot& s = st[++sp];
        SetNull(&s);
        event::FieldType type;
        const event::Value* f = PresentField(p, in.a, rec, &type);
        if (!f) break;
        const event::Value& v = *f;
        switch (type) {
          case event::FieldType::kString:
          case event::FieldType::kEnum:
            SetStr(&s, v.text);
            break;
          case event::FieldType::kBool:
            SetBool(&s, v.b);
            break;
          case event::FieldType::kInt:
          case event::FieldType::kTimestamp:
            SetNum(&s, static_cast<double>(v.i));
            break;
          case event::FieldType::kFloat:
          case event::FieldType::kDecimal:
            SetNum(&s, v.d);
            break;
        }
        break;
      }
      case Op::kTime:
        SetNum(&st[++sp], static_cast<double>(rec.time_ms));
        break;
      case Op::kEventType:
        if (rec.type != nullptr) {
          SetStr(&st[++sp], rec.type->name);
        } else {
          SetNull(&st[++sp]);
        }
        break;
      case Op::kEventId:
        if (rec.type != nullptr && !rec.event_id.empty()) {
          SetStr(&st[++sp], rec.event_id);
        } else {
          SetNull(&st[++sp]);
        }
        break;
      case Op::kScore:
        SetNum(&st[++sp], score);  // NaN (no score) becomes null
        break;
      case Op::kFeature:
        if (features != nullptr) {
          SetNum(&st[++sp], features[in.a]);  // NaN (missing) becomes null
        } else {
          SetNull(&st[++sp]);
        }
        break;
      case Op::kNeg:
        if (st[sp].kind == Kind::kNumber) st[sp].num = -st[sp].num;
        break;
      case Op::kNot:
        SetBool(&st[sp], !IsTrue(st[sp]));
        break;
      case Op::kToBool:
        SetBool(&st[sp], IsTrue(st[sp]));
        break;
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod: {
        Slot& l = st[sp - 1];
        const Slot& r = st[sp];
        --sp;
        if (l.kind == Kind::kNull || r.kind == Kind::kNull) {
          SetNull(&l);
          break;
        }
        switch (in.op) {
          case Op::kAdd:
            SetNum(&l, l.num + r.num);
            break;
          case Op::kSub:
            SetNum(&l, l.num - r.num);
            break;
          case Op::kMul:
            SetNum(&l, l.num * r.num);
            break;
          case Op::kDiv:
            if (r.num == 0) {
              SetNull(&l);
            } else {
              SetNum(&l, l.num / r.num);
            }
            break;
          default:
            if (r.num == 0) {
              SetNull(&l);
            } else {
              SetNum(&l, std::fmod(l.num, r.num));
            }
            break;
        }
        break;
      }
      case Op::kCmpNum:
      case Op::kCmpStr:
      case Op::kCmpBool: {
        Slot& l = st[sp - 1];
        const Slot& r = st[sp];
        --sp;
        if (l.kind == Kind::kNull || r.kind == Kind::kNull) {
          SetBool(&l, false);  // any comparison with null is false
          break;
        }
        int c;
        if (in.op == Op::kCmpNum) {
          c = l.num < r.num ? -1 : (l.num > r.num ? 1 : 0);
        } else if (in.op == Op::kCmpStr) {
          const int k = Str(l).compare(Str(r));
          c = k < 0 ? -1 : (k > 0 ? 1 : 0);
        } else {
          c = l.b == r.b ? 0 : 1;
        }
        SetBool(&l, Compare(static_cast<Cmp>(in.flag), c));
        break;
      }
      case Op::kInNum: {
        Slot& s = st[sp];
        if (s.kind == Kind::kNull) {
          SetBool(&s, false);
          break;
        }
        const std::vector<double>& set = p.number_sets[static_cast<size_t>(in.a)];
        const bool found = std::binary_search(set.begin(), set.end(), s.num);
        SetBool(&s, found != (in.flag != 0));
        break;
      }
      case Op::kInStr: {
        Slot& s = st[sp];
        if (s.kind == Kind::kNull) {
          SetBool(&s, false);
          break;
        }
        const bool found = p.string_sets[static_cast<size_t>(in.a)].contains(Str(s));
        SetBool(&s, found != (in.flag != 0));
        break;
      }
      case Op::kInList: {
        Slot& s = st[sp];
        if (s.kind == Kind::kNull) {
          SetBool(&s, false);
          break;
        }
        bool found = false;
        if (s.n <= kMaxListEntryBytes) {
          char buf[kMaxListEntryBytes];
          for (size_t i = 0; i < s.n; ++i) {
            const char c = s.p[i];
            buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
          }
          found = p.lists[static_cast<size_t>(in.a)]->contains(std::string_view(buf, s.n));
        }
        SetBool(&s, found != (in.flag != 0));
        break;
      }
      case Op::kAndJump:
        if (!IsTrue(st[sp])) {
          SetBool(&st[sp], false);
          pc = static_cast<size_t>(in.a);
        } else {
          --sp;
        }
        break;
      case Op::kOrJump:
        if (IsTrue(st[sp])) {
          pc = static_cast<size_t>(in.a);
        } else {
          --sp;
        }
        break;
      case Op::kCoalesceJump:
        if (st[sp].kind != Kind::kNull) {
          pc = static_cast<size_t>(in.a);
        } else {
          --sp;
        }
        break;
      case Op::kRatio: {
        Slot& a = st[sp - 2];
        const Slot& b = st[sp - 1];
        const Slot& d = st[sp];
        sp -= 2;
        if (b.kind == Kind::kNull || b.num == 0) {
          a = d;
        } else if (a.kind != Kind::kNull) {
          SetNum(&a, a.num / b.num);
        }
        break;
      }
      case Op::kMin:
      case Op::kMax: {
        Slot& l = st[sp - 1];
        const Slot& r = st[sp];
        --sp;
        if (l.kind == Kind::kNull || r.kind == Kind::kNull) {
          SetNull(&l);
        } else if (in.op == Op::kMin ? r.num < l.num : r.num > l.num) {
          l.num = r.num;
        }
        break;
      }
      case Op::kAbs:
        if (st[sp].kind == Kind::kNumber) st[sp].num = std::fabs(st[sp].num);
        break;
      case Op::kLog1p:
        if (st[sp].kind == Kind::kNumber) SetNum(&st[sp], std::log1p(st[sp].num));
        break;
      case Op::kHourOfDay:
      case Op::kDayOfWeek:
      case Op::kIsWeekend: {
        Slot& s = st[sp];
        int64_t ms;
        if (!ToMs(s, &ms)) {
          SetNull(&s);
        } else if (in.op == Op::kHourOfDay) {
          SetNum(&s, static_cast<double>(FloorMod(ms, core::kMsPerDay) / core::kMsPerHour));
        } else if (in.op == Op::kDayOfWeek) {
          SetNum(&s, DayOfWeek(ms));
        } else {
          SetBool(&s, DayOfWeek(ms) >= 5);
        }
        break;
      }
      case Op::kEmailDomain: {
        Slot& s = st[sp];
        if (s.kind != Kind::kString) break;
        const std::string_view v = Str(s);
        const size_t at = v.rfind('@');
        if (at == std::string_view::npos || at + 1 == v.size()) {
          SetNull(&s);
        } else {
          SetStr(&s, v.substr(at + 1));
        }
        break;
      }
      case Op::kIpPrefix: {
        Slot& s = st[sp];
        if (s.kind != Kind::kString) break;
        const std::string_view v = Str(s);
        uint32_t addr;
        if (!ParseIpv4(v, &addr)) {
          SetNull(&s);
          break;
        }
        // Keep the text up to the 2nd (/16) or 3rd (/24) dot.
        const int keep = in.flag == 24 ? 3 : 2;
        size_t i = 0;
        for (int dots = 0; i < v.size(); ++i) {
          if (v[i] == '.' && ++dots == keep) break;
        }
        SetStr(&s, v.substr(0, i));
        break;
      }
      case Op::kLookupPrefix:
      case Op::kLookupPrefixNum:
      case Op::kLookupIp: {
        Slot& s = st[sp];
        if (s.kind == Kind::kNull) break;
        const Table& t = *p.tables[static_cast<size_t>(in.a)];
        std::string_view value;
        bool found = false;
        if (in.op == Op::kLookupPrefix) {
          found = t.LookupPrefix(Str(s), &value);
        } else if (in.op == Op::kLookupPrefixNum) {
          // A non-negative whole number, as its digits.
          if (s.num >= 0 && s.num < 1e19 && std::floor(s.num) == s.num) {
            char buf[24];
            auto r = std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(s.num));
            found = t.LookupPrefix(std::string_view(buf, static_cast<size_t>(r.ptr - buf)), &value);
          }
        } else {
          uint32_t addr;
          found = ParseIpv4(Str(s), &addr) && t.LookupIp(addr, &value);
        }
        if (found) {
          SetStr(&s, value);
        } else {
          SetNull(&s);
        }
        break;
      }
    }
  }
  const Slot& r = st[0];
  Value out;
  out.kind = r.kind;
  switch (r.kind) {
    case Kind::kNull:
      break;
    case Kind::kNumber:
      out.num = r.num;
      break;
    case Kind::kBool:
      out.b = r.b;
      break;
    case Kind::kString:
      out.str = Str(r);
      break;
  }
  return out;
}

double Expr::EvalNumber(const event::Record& rec, const double* features, double score) const noexcept {
  const Program& p = *prog_;
  if (p.code.size() == 1 && p.code[0].op == Op::kField) {  // `event.amount`: no interpreter
    event::FieldType type;
    const event::Value* f = PresentField(p, p.code[0].a, rec, &type);
    if (!f) return std::numeric_limits<double>::quiet_NaN();
    switch (type) {
      case event::FieldType::kBool: return f->b ? 1.0 : 0.0;
      case event::FieldType::kInt:
      case event::FieldType::kTimestamp: return static_cast<double>(f->i);
      case event::FieldType::kFloat:
      case event::FieldType::kDecimal:
        return std::isfinite(f->d) ? f->d : std::numeric_limits<double>::quiet_NaN();
      default: return std::numeric_limits<double>::quiet_NaN();  // strings
    }
  }
  const Value v = Eval(rec, features, score);
  switch (v.kind) {
    case Kind::kNumber:
      return v.num;
    case Kind::kBool:
      return v.b ? 1.0 : 0.0;
    default:
      return std::numeric_limits<double>::quiet_NaN();
  }
}

bool Expr::EvalBool(const event::Record& rec, const double* features, double score) const noexcept {
  const Value v = Eval(rec, features, score);
  switch (v.kind) {
    case Kind::kBool:
      return v.b;
    case Kind::kNumber:
      return v.num != 0;
    default:
      return false;
  }
}

SourcePos SourcePosOf(const core::ConfigNode& n) {
  const core::SourceText& text = n.source();
  const core::SourceText::Start st = text.ScalarStart(n);
  SourcePos p;
  p.file = n.file();
  p.line = st.line;
  p.column = st.column;
  p.continuation_column = st.continuation_column;
  p.positions = text.ScalarPositions(n);
  return p;
}

}  // namespace vigil::expr
