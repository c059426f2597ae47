#include "event/pii.h"

#include "event/record.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <functional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "core/strings.h"

namespace vigil::event {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(p), n));
}

bool IsPiiEntityKey(std::string_view key, const Schema& schema) {
  for (const EventTypeSpec& t : schema.types) {
    const FieldSpec* f = t.Find(key);
    if (f && f->pii != PiiMode::kNone) return true;
  }
  return false;
}

// The pii mode of a JSON key at `path` ("a.b") for `type`; for a key the type
// does not declare, or an unknown type, that of any pii field of that name.
PiiMode PiiOfKey(std::string_view path, std::string_view last, const EventTypeSpec* type,
                 const Schema& schema) {
  if (type) {
    auto it = type->json_keys.find(path);
    if (it != type->json_keys.end()) return type->fields[it->second].pii;
  }
  for (std::string_view n : {path, last}) {
    auto it = schema.pii_by_name.find(n);
    if (it != schema.pii_by_name.end()) return it->second;
  }
  return PiiMode::kNone;
}

std::string UnquoteLoose(std::string_view tok) {
  if (tok.size() >= 2 && tok.front() == '"' && tok.back() == '"')
    tok = tok.substr(1, tok.size() - 2);
  std::string out, err;
  if (absl::CUnescape(absl::string_view(tok.data(), tok.size()), &out, &err)) return out;
  return std::string(tok);
}

bool JsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// A tolerant JSON token scanner. For every scalar value it calls
// `on_value(path, key, begin, end, inherited)` with the token's span in
// `text` (strings including their quotes): `path` is where it lies ("a.b"),
// `key` its own key, `inherited` the pii mode of the nearest container whose
// key `classify(path, key)` found pii (kNone when none): an object's members
// and an array's elements under "email" are e-mails. Keys are read as JSON
// reads them (escapes such as \u0061 decoded), whatever white space precedes
// their colon. Bounded work on hostile text: past kMaxDepth containers every
// scalar is reported as kHash (no event is that deep), and a key longer than
// kMaxKeyBytes (no field name is) enters paths as "?". Malformed text is
// scanned as far as it goes; an unterminated string runs to the end.
constexpr size_t kMaxDepth = 32;
constexpr size_t kMaxKeyBytes = 256;

void ScanJson(std::string_view text,
              const std::function<PiiMode(std::string_view path, std::string_view key)>& classify,
              const std::function<void(std::string_view path, std::string_view key, size_t b,
                                       size_t e, PiiMode inherited)>& on_value) {
  struct Container {
    char open;          // '{' or '['
    std::string path;   // an object's path; an array's: the path of its key
    std::string key;    // an array's key (its elements are its values), or ""
    PiiMode inherited;  // from its own key or an enclosing container's
  };
  std::vector<Container> stack;
  std::string pending_key;
  bool have_key = false;
  size_t i = 0;
  auto string_end = [&](size_t b) {  // b at the opening quote; returns one past the closing one
    size_t j = b + 1;
    while (j < text.size() && text[j] != '"') j += text[j] == '\\' ? 2 : 1;
    return std::min(j + 1, text.size());
  };
  auto path_of = [&](std::string_view key) {
    const std::string& base = stack.empty() ? std::string() : stack.back().path;
    return base.empty() ? std::string(key) : StrCat(base, ".", key);
  };
  auto inherited = [&] { return stack.empty() ? PiiMode::kNone : stack.back().inherited; };
  // Reports the scalar [b, e): under the pending key in an object, under the
  // enclosing array's key in an array; anything else is no value of a key.
  auto report = [&](size_t b, size_t e) {
    if (stack.size() > kMaxDepth) {
      on_value("", "", b, e, PiiMode::kHash);
    } else if (have_key) {
      on_value(path_of(pending_key), pending_key, b, e, inherited());
    } else if (!stack.empty() && stack.back().open == '[') {
      const Container& c = stack.back();
      if (!c.key.empty() || c.inherited != PiiMode::kNone)
        on_value(c.path, c.key, b, e, c.inherited);
    }
    have_key = false;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {
      const size_t e = string_end(i);
      size_t k = e;
      while (k < text.size() && JsonSpace(text[k])) ++k;
      const bool in_object = !stack.empty() && stack.back().open == '{';
      if (in_object && !have_key && k < text.size() && text[k] == ':') {
        const std::string_view raw = text.substr(i + 1, e >= i + 2 ? e - i - 2 : 0);
        if (raw.size() > kMaxKeyBytes) {
          pending_key = "?";
        } else if (raw.find('\\') == std::string_view::npos) {
          pending_key.assign(raw);
        } else {
          pending_key = UnquoteLoose(raw);
        }
        have_key = true;
        i = k + 1;
        continue;
      }
      report(i, e);
      i = e;
      continue;
    }
    if (c == '{' || c == '[') {
      Container box{c, "", "", inherited()};
      if (stack.size() < kMaxDepth) {
        if (have_key) {
          box.path = path_of(pending_key);
          if (box.inherited == PiiMode::kNone) box.inherited = classify(box.path, pending_key);
          if (c == '[') box.key = pending_key;
        } else if (!stack.empty()) {
          // An element of an array: the array's path and key.
          box.path = stack.back().path;
          box.key = stack.back().open == '[' ? stack.back().key : std::string();
        }
      }
      stack.push_back(std::move(box));
      have_key = false;
      ++i;
      continue;
    }
    if (c == '}' || c == ']') {
      if (!stack.empty()) stack.pop_back();
      have_key = false;
      ++i;
      continue;
    }
    if (JsonSpace(c) || c == ',' || c == ':') {
      if (c == ',') have_key = false;
      ++i;
      continue;
    }
    // A bare token (a number, true, null, or junk): up to where a value ends
    // or another begins; reported if it is a key's value.
    size_t e = i;
    while (e < text.size() && text[e] != ',' && text[e] != '}' && text[e] != ']' &&
           text[e] != '{' && text[e] != '[' && text[e] != '"' && !JsonSpace(text[e])) {
      ++e;
    }
    report(i, e);
    i = std::max(e, i + 1);
  }
}

}  // namespace

PiiMode EffectivePii(const FieldSpec* f, std::string_view name, const Record* rec,
                     const Schema& schema) {
  if (!schema.has_pii) return PiiMode::kNone;
  if (!f) {
    auto it = schema.pii_by_name.find(name);
    if (it == schema.pii_by_name.end()) it = schema.pii_by_name.find(name.substr(name.rfind('.') + 1));
    return it == schema.pii_by_name.end() ? PiiMode::kNone : it->second;
  }
  if (f->pii != PiiMode::kNone || f->name != "target_entity.value") return f->pii;
  // A label's entity value is as sensitive as the key it belongs to.
  if (rec && rec->type) {
    const FieldSpec* k = rec->type->Find("target_entity.key");
    if (k && static_cast<size_t>(k->index) < rec->values.size() && (*rec)[k->index].present()) {
      return IsPiiEntityKey((*rec)[k->index].text, schema) ? PiiMode::kHash : PiiMode::kNone;
    }
  }
  return PiiMode::kHash;  // key not known (yet): assume the worst
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr);
  return Hex(md, n);
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256Stream::Update(std::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), bytes.data(), bytes.size());
}

std::string Sha256Stream::Hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &n);
  return event::Hex(md, n);
}

PiiHasher PiiHasher::FromEnv(const std::string& env_var, std::string* warning) {
  const char* k = std::getenv(env_var.c_str());
  if (k && *k) return PiiHasher(k);
  unsigned char buf[32];
  RAND_bytes(buf, sizeof buf);
  *warning = StrCat(env_var,
                          " is not set: pii fields are hashed with a random key for this run, so "
                          "their hashes will not match those of other runs");
  return PiiHasher(std::string(reinterpret_cast<char*>(buf), sizeof buf));
}

std::string PiiHasher::Hash(std::string_view value) const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(value.data()), value.size(), md, &n);
  return StrCat("hmac:", Hex(md, 16));
}

std::string PiiHasher::Mask(std::string_view value, PiiMode mode) const {
  switch (mode) {
    case PiiMode::kNone:
      return std::string(value);
    case PiiMode::kHash:
      return Hash(value);
    case PiiMode::kRedact:
      return std::string(kRedacted);
  }
  return std::string(kRedacted);
}

std::string MaskCsvLine(std::string_view line, const std::vector<const FieldSpec*>& csv_fields,
                        const PiiHasher& hasher) {
  bool any = false;
  for (const FieldSpec* f : csv_fields) any |= f && f->pii != PiiMode::kNone;
  if (!any) return std::string(line);
  // With a cell missing or extra, positions no longer say which cell is which:
  // mask every cell.
  size_t cells = 1;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    if (c == ',' && !quoted) ++cells;
  }
  const bool mask_all = cells != csv_fields.size();
  std::string out;
  size_t col = 0, i = 0;
  while (i <= line.size()) {
    // One cell: quoted or plain, up to the next unquoted comma.
    size_t b = i, e = i;
    if (e < line.size() && line[e] == '"') {
      ++e;
      while (e < line.size()) {
        if (line[e] == '"' && e + 1 < line.size() && line[e + 1] == '"') {
          e += 2;
        } else if (line[e] == '"') {
          ++e;
          break;
        } else {
          ++e;
        }
      }
    }
    while (e < line.size() && line[e] != ',') ++e;
    std::string_view cell = line.substr(b, e - b);
    const FieldSpec* f = col < csv_fields.size() ? csv_fields[col] : nullptr;
    const PiiMode mode = mask_all ? PiiMode::kHash : (f ? f->pii : PiiMode::kNone);
    if (mode != PiiMode::kNone && !cell.empty()) {
      std::string v(cell);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      out += hasher.Mask(v, mode);
    } else {
      out.append(cell);
    }
    if (e >= line.size()) break;
    out += ',';
    i = e + 1;
    ++col;
  }
  return out;
}

std::string MaskJsonText(std::string_view text, const EventTypeSpec* type, const Schema& schema,
                         const PiiHasher& hasher) {
  if (!schema.has_pii) return std::string(text);
  auto none = [](std::string_view, std::string_view) { return PiiMode::kNone; };
  // Pass 1: does a label's target_entity name a pii key?
  bool entity_value_is_pii = false;
  ScanJson(text, none, [&](std::string_view path, std::string_view, size_t b, size_t e, PiiMode) {
    if (path == "target_entity.key" && IsPiiEntityKey(UnquoteLoose(text.substr(b, e - b)), schema)) {
      entity_value_is_pii = true;
    }
  });
  auto classify = [&](std::string_view path, std::string_view key) {
    if (path == "target_entity.value" && entity_value_is_pii) return PiiMode::kHash;
    return PiiOfKey(path, key, type, schema);
  };
  struct Span { size_t b, e; PiiMode mode; };
  std::vector<Span> spans;
  ScanJson(text, classify,
           [&](std::string_view path, std::string_view key, size_t b, size_t e, PiiMode inherited) {
             const PiiMode m = inherited != PiiMode::kNone ? inherited : classify(path, key);
             if (m != PiiMode::kNone) spans.push_back({b, e, m});
           });
  std::string out;
  size_t at = 0;
  for (const Span& s : spans) {
    out.append(text.substr(at, s.b - at));
    out += '"';
    out += hasher.Mask(UnquoteLoose(text.substr(s.b, s.e - s.b)), s.mode);
    out += '"';
    at = s.e;
  }
  out.append(text.substr(at));
  return out;
}

}  // namespace vigil::event
