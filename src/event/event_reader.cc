#include "event/event_reader.h"

#include "core/strings.h"
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

EventReader::EventReader(std::unique_ptr<LineReader> lines, std::shared_ptr<const Schema> schema,
                         const PiiHasher* hasher, Format format)
    : lines_(std::move(lines)),
      schema_(schema),
      hasher_(hasher),
      format_(format),
      validator_(std::move(schema), hasher) {}

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Open(const std::string& path,
                                                               std::shared_ptr<const Schema> schema,
                                                               const PiiHasher* hasher,
                                                               Format format) {
  if (format == Format::kAuto) format = FormatFromPath(path);
  LineReaderOptions opts;
  opts.max_record_bytes = static_cast<size_t>(schema->max_record_bytes);
  VIGIL_ASSIGN_OR_RETURN(auto lines, LineReader::Open(path, opts));
  return Start(std::move(lines), path, std::move(schema), hasher, format);
}

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::FromString(
    std::string data, std::shared_ptr<const Schema> schema, const PiiHasher* hasher,
    Format format) {
  LineReaderOptions opts;
  opts.max_record_bytes = static_cast<size_t>(schema->max_record_bytes);
  return Start(LineReader::FromString(std::move(data), opts), "<memory>", std::move(schema), hasher,
               format);
}

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Start(
    std::unique_ptr<LineReader> lines, const std::string& path,
    std::shared_ptr<const Schema> schema, const PiiHasher* hasher, Format format) {
  if (format == Format::kAuto) {
    std::string_view head = lines->Peek(4096);
    size_t i = 0;
    if (head.size() >= 3 && head.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
    while (i < head.size() && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) ++i;
    format = (i < head.size() && head[i] == '{') ? Format::kJsonLines : Format::kCsv;
  }
  if (!lines->status().ok()) return lines->status();
  // Quoted CSV values may hold newlines.
  lines->SetCsvQuotes(format == Format::kCsv);
  auto reader = std::unique_ptr<EventReader>(
      new EventReader(std::move(lines), std::move(schema), hasher, format));
  if (format == Format::kCsv) {
    LineReader::Line header;
    if (!reader->lines_->Next(&header)) {
      if (!reader->lines_->status().ok()) return reader->lines_->status();
      return absl::InvalidArgumentError(StrCat(path, ": empty file (a CSV file needs a header line)"));
    }
    if (header.truncated) {
      return absl::InvalidArgumentError(StrCat(path, ": the CSV header is longer than max_record_bytes"));
    }
    absl::Status st = reader->validator_.SetCsvHeader(header.text);
    if (!st.ok()) return absl::InvalidArgumentError(StrCat(path, ": ", st.message()));
  }
  return reader;
}

void EventReader::Reject(const LineReader::Line& line, const Record& rec, Rejection* rej) {
  rej->record_no = records_;
  rej->line_no = line.line_no;
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

EventReader::Result EventReader::Next(Record* rec, Rejection* rej) {
  LineReader::Line line;
  while (true) {
    if (!lines_->Next(&line)) return Result::kEnd;
    if (format_ == Format::kJsonLines) {
      // Blank lines separate nothing in JSON Lines; they are not records.
      bool blank = true;
      for (char c : line.text) {
        if (c != ' ' && c != '\t' && c != '\r') {
          blank = false;
          break;
        }
      }
      if (blank) continue;
    }
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
