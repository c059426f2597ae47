#include "event/event_reader.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/strings.h"
#include "simdjson.h"

namespace vigil::event {

const char* FormatName(Format f) {
  switch (f) {
    case Format::kAuto: return "auto";
    case Format::kCsv: return "csv";
    case Format::kJsonLines: return "jsonl";
  }
  return "?";
}

Format FormatFromPath(const std::string& path) {
  std::string p = path;
  if (EndsWith(p, ".gz")) p.resize(p.size() - 3);
  if (EndsWith(p, ".csv")) return Format::kCsv;
  if (EndsWith(p, ".jsonl") || EndsWith(p, ".ndjson") || EndsWith(p, ".json")) {
    return Format::kJsonLines;
  }
  return Format::kAuto;
}

namespace {

absl::Status CannotOpen(const std::string& path, int err) {
  const std::string msg = StrCat(path, ": cannot open: ", strerror(err));
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
  if (err == EACCES) return absl::PermissionDeniedError(msg);
  return absl::InvalidArgumentError(msg);
}

bool IsEventFileName(std::string_view name) {
  return !StartsWith(name, ".") && (EndsWith(name, ".jsonl") || EndsWith(name, ".jsonl.gz"));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ExpandEventPaths(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const std::string& a : args) {
    if (a == "-") {
      out.push_back(a);
      continue;
    }
    struct stat st;
    if (stat(a.c_str(), &st) != 0) return CannotOpen(a, errno);
    if (!S_ISDIR(st.st_mode)) {
      out.push_back(a);
      continue;
    }
    DIR* d = opendir(a.c_str());
    if (!d) return CannotOpen(a, errno);
    const std::string dir = EndsWith(a, "/") ? a : a + "/";
    std::vector<std::string> names;
    while (const dirent* e = readdir(d)) {
      if (!IsEventFileName(e->d_name)) continue;
      struct stat fst;
      const std::string path = dir + e->d_name;
      if (stat(path.c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) names.push_back(e->d_name);
    }
    closedir(d);
    if (names.empty()) {
      return absl::InvalidArgumentError(
          StrCat(a, ": the directory holds no *.jsonl or *.jsonl.gz files"));
    }
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) out.push_back(dir + n);
  }
  if (out.size() > 1 && std::find(out.begin(), out.end(), "-") != out.end()) {
    return absl::InvalidArgumentError(
        "- (standard input) cannot be read together with other event files");
  }
  return out;
}

EventReader::EventReader(std::shared_ptr<const Schema> schema, const PiiHasher* hasher,
                         Format format)
    : schema_(schema),
      hasher_(hasher),
      requested_(format),
      format_(Format::kAuto),
      validator_(std::move(schema), hasher) {}

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Open(const std::string& path,
                                                               std::shared_ptr<const Schema> schema,
                                                               const PiiHasher* hasher,
                                                               Format format) {
  return OpenFiles({path}, std::move(schema), hasher, format);
}

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::OpenFiles(
    const std::vector<std::string>& paths, std::shared_ptr<const Schema> schema,
    const PiiHasher* hasher, Format format) {
  if (paths.empty()) return absl::InvalidArgumentError("no event file given");
  Format named = Format::kAuto;  // the first format known from a name
  for (const std::string& p : paths) {
    if (p == "-") {
      if (paths.size() > 1) {
        return absl::InvalidArgumentError(
            "- (standard input) cannot be read together with other event files");
      }
      continue;
    }
    // Every file up front: a missing one fails now, not after an hour of
    // reading the others.
    struct stat st;
    if (stat(p.c_str(), &st) != 0) return CannotOpen(p, errno);
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(StrCat(p, ": is a directory, not an event file"));
    }
    const Format f = FormatFromPath(p);
    if (format != Format::kAuto || f == Format::kAuto) continue;
    if (named == Format::kAuto) {
      named = f;
    } else if (f != named) {
      return absl::InvalidArgumentError(StrCat(p, ": ", FormatName(f), " among ", FormatName(named),
                                               " files; the files of one input share one format"));
    }
  }
  LineReaderOptions opts;
  opts.max_record_bytes = static_cast<size_t>(schema->max_record_bytes);
  VIGIL_ASSIGN_OR_RETURN(auto lines, LineReader::Open(paths[0], opts));
  auto reader = std::unique_ptr<EventReader>(new EventReader(std::move(schema), hasher, format));
  reader->paths_ = paths;
  VIGIL_RETURN_IF_ERROR(
      reader->BeginFile(std::move(lines), paths[0] == "-" ? "<stdin>" : paths[0]));
  return reader;
}

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::FromString(
    std::string data, std::shared_ptr<const Schema> schema, const PiiHasher* hasher,
    Format format) {
  LineReaderOptions opts;
  opts.max_record_bytes = static_cast<size_t>(schema->max_record_bytes);
  auto lines = LineReader::FromString(std::move(data), opts);
  auto reader = std::unique_ptr<EventReader>(new EventReader(std::move(schema), hasher, format));
  VIGIL_RETURN_IF_ERROR(reader->BeginFile(std::move(lines), "<memory>"));
  return reader;
}

absl::Status EventReader::BeginFile(std::unique_ptr<LineReader> lines, const std::string& name) {
  Format format = requested_;
  if (format == Format::kAuto) format = FormatFromPath(name);
  if (format == Format::kAuto) {
    std::string_view head = lines->Peek(4096);
    size_t i = 0;
    if (head.size() >= 3 && head.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
    while (i < head.size() && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) ++i;
    if (i < head.size()) {
      format = head[i] == '{' ? Format::kJsonLines : Format::kCsv;
    } else {
      // Nothing to sniff: an empty file is whatever the stream is.
      format = format_ != Format::kAuto ? format_ : Format::kCsv;
    }
  }
  if (!lines->status().ok()) return lines->status();
  if (format_ != Format::kAuto && format != format_) {
    return absl::InvalidArgumentError(StrCat(name, ": ", FormatName(format), ", but ", name_,
                                             " before it is ", FormatName(format_),
                                             "; the files of one input share one format"));
  }
  format_ = format;
  // Quoted CSV values may hold newlines.
  lines->SetCsvQuotes(format == Format::kCsv);
  if (lines_) bytes_before_ += lines_->bytes_read();
  lines_ = std::move(lines);
  name_ = name;
  if (format == Format::kCsv) {
    LineReader::Line header;
    if (!lines_->Next(&header)) {
      if (!lines_->status().ok()) return lines_->status();
      return absl::InvalidArgumentError(
          StrCat(name, ": empty file (a CSV file needs a header line)"));
    }
    if (header.truncated) {
      return absl::InvalidArgumentError(
          StrCat(name, ": the CSV header is longer than max_record_bytes"));
    }
    absl::Status st = validator_.SetCsvHeader(header.text);
    if (!st.ok()) return absl::InvalidArgumentError(StrCat(name, ": ", st.message()));
  }
  return absl::OkStatus();
}

bool EventReader::NextFile() {
  if (!status_.ok() || file_ + 1 >= paths_.size()) return false;
  ++file_;
  LineReaderOptions opts;
  opts.max_record_bytes = static_cast<size_t>(schema_->max_record_bytes);
  auto lines = LineReader::Open(paths_[file_], opts);
  status_ = lines.ok() ? BeginFile(std::move(*lines), paths_[file_]) : lines.status();
  return status_.ok();
}

void EventReader::Reject(const LineReader::Line& line, const Record& rec, Rejection* rej) {
  rej->record_no = records_;
  rej->line_no = line.line_no;
  rej->file = name_;
  rej->violations = violations_;
  rej->raw_truncated = line.truncated;
  rej->raw_bytes = line.truncated ? line.full_size : line.text.size();
  rej->event_id.clear();
  if (!rec.event_id.empty()) {
    const FieldSpec* idf = rec.type ? &rec.type->fields[rec.type->id_field] : nullptr;
    rej->event_id = validator_.Printable(idf, rec.event_id, &rec);
  } else if (rec.type && rec.type->id_field >= 0) {
    const Value& v = rec[rec.type->id_field];
    if (v.present()) rej->event_id = validator_.Printable(&rec.type->fields[rec.type->id_field], v.text, &rec);
  }
  if (format_ == Format::kCsv) {
    rej->raw = MaskCsvLine(line.text, validator_.csv_fields(), *hasher_);
  } else {
    rej->raw = MaskJsonText(line.text, rec.type, *schema_, *hasher_);
  }
}

void EventReader::PeekKeyHashes(size_t ahead, std::span<const int> fields,
                                std::span<uint64_t> hashes) {
  std::fill_n(hashes.begin(), fields.size(), 0);
  if (format_ != Format::kCsv || schema_->csv_type < 0) return;
  const std::vector<const FieldSpec*>& columns = validator_.csv_fields();
  if (peek_file_ != file_ ||
      !std::equal(fields.begin(), fields.end(), peek_fields_.begin(), peek_fields_.end())) {
    peek_fields_.assign(fields.begin(), fields.end());
    peek_columns_.assign(fields.size(), -1);
    for (size_t i = 0; i < fields.size(); ++i) {
      for (size_t c = 0; c < columns.size(); ++c) {
        if (columns[c] && columns[c]->index == fields[i]) peek_columns_[i] = static_cast<int>(c);
      }
    }
    peek_file_ = file_;
  }
  const std::string_view line = lines_->PeekLine(ahead);
  if (line.empty()) return;
  const EventTypeSpec& type = schema_->types[static_cast<size_t>(schema_->csv_type)];
  // The cells up to the last column asked for, one pass.
  int last = -1;
  for (int c : peek_columns_) last = std::max(last, c);
  size_t at = 0;
  for (int c = 0; c <= last && at <= line.size(); ++c) {
    const char* comma =
        static_cast<const char*>(std::memchr(line.data() + at, ',', line.size() - at));
    const size_t stop = comma ? static_cast<size_t>(comma - line.data()) : line.size();
    const std::string_view cell = line.substr(at, stop - at);
    // A quoted cell may hold commas: the columns after it cannot be told.
    if (!cell.empty() && cell[0] == '"') break;
    for (size_t i = 0; i < fields.size(); ++i) {
      if (peek_columns_[i] != c || cell.empty()) continue;
      hashes[i] = KeyHashOfText(type.fields[static_cast<size_t>(fields[i])].type, cell);
    }
    if (!comma) break;
    at = stop + 1;
  }
}

EventReader::Result EventReader::Next(Record* rec, Rejection* rej) {
  LineReader::Line line;
  while (true) {
    if (!lines_->Next(&line)) {
      // The end of a file: on to the next, unless reading failed.
      if (!lines_->status().ok() || !NextFile()) return Result::kEnd;
      continue;
    }
    // A byte-order mark opening a JSON Lines file is not part of its first
    // record (a CSV file's goes with its header).
    if (format_ == Format::kJsonLines && line.line_no == 1 && line.text.size() >= 3 &&
        line.text.substr(0, 3) == "\xEF\xBB\xBF") {
      line.text.remove_prefix(3);
      line.readable -= 3;
    }
    // Blank lines are not records, in JSON Lines or CSV (a CSV record has a
    // column per field; an editor's trailing empty line is none).
    bool blank = true;
    for (char c : line.text) {
      if (c != ' ' && c != '\t' && c != '\r') {
        blank = false;
        break;
      }
    }
    if (blank && !line.truncated) continue;
    break;
  }
  ++records_;
  rec->record_no = records_;
  rec->line_no = line.line_no;
  rec->raw = line.text;
  violations_.clear();
  if (line.truncated) {
    rec->type = nullptr;
    rec->event_id = {};
    violations_.push_back(Violation{
        Rule::kRecordTooLarge, "", StrCat(line.full_size),
        StrCat("the record is ", line.full_size > 0 ? StrCat(line.full_size) : "more than",
                     " bytes; the limit is ", schema_->max_record_bytes, " (limits.max_record_bytes)")});
    Reject(line, *rec, rej);
    return Result::kRejected;
  }
  const bool ok = format_ == Format::kCsv
                      ? validator_.DecodeCsv(line.text, rec, &violations_)
                      : validator_.DecodeJson(line.text, line.readable, rec, &violations_);
  if (!ok || !validator_.CheckAndCommit(*rec, &violations_)) {
    Reject(line, *rec, rej);
    return Result::kRejected;
  }
  return Result::kRecord;
}

}  // namespace vigil::event
