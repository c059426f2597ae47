#include "event/line_reader.h"

#include <zlib.h>

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::event {
namespace {

std::vector<LineReader::Line> ReadAll(LineReader& r, std::vector<std::string>* texts) {
  std::vector<LineReader::Line> out;
  LineReader::Line l;
  while (r.Next(&l)) {
    texts->emplace_back(l.text);
    out.push_back(l);
    EXPECT_GE(l.readable, l.text.size() + kReadPadding);
  }
  EXPECT_TRUE(r.status().ok()) << r.status();
  return out;
}

std::string Gzip(const std::string& s) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, s.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
  zs.avail_in = static_cast<uInt>(s.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(LineReaderTest, SplitsLinesStripsCarriageReturnsAndKeepsALastLineWithoutNewline) {
  auto r = LineReader::FromString("a\r\nbb\n\nccc", {});
  std::vector<std::string> t;
  auto lines = ReadAll(*r, &t);
  EXPECT_EQ(t, (std::vector<std::string>{"a", "bb", "", "ccc"}));
  EXPECT_EQ(lines[3].line_no, 4);
}

// Read-ahead peeks at lines Next has not returned yet: whatever the k and
// however the calls come (once per Next, skipping some, changing k), a line
// PeekLine gives is the one Next returns k calls later, \r stripped. Over
// 3 MB, so that the buffer (1 MB) moves under the peeks several times.
TEST(LineReaderTest, PeekedLinesAreTheLinesNextReturnsLater) {
  std::mt19937 rng(11);
  std::string data;
  std::vector<std::string> want;
  while (data.size() < (3 << 20)) {
    std::string line(1 + rng() % 90, 'x');  // never empty: an empty peek is "not buffered"
    for (char& c : line) c = static_cast<char>('a' + rng() % 26);
    want.push_back(line);
    data += line + (rng() % 4 == 0 ? "\r\n" : "\n");
  }
  data += "last";  // no newline: never whole while peeked
  want.push_back("last");
  LineReaderOptions o;
  o.max_record_bytes = 256;
  auto r = LineReader::FromString(data, o);
  std::vector<std::string> got;
  std::vector<std::pair<size_t, std::string>> peeked;  // (index of the line, its text)
  size_t k = 3;
  LineReader::Line l;
  size_t empty = 0;
  while (true) {
    if (rng() % 1000 == 0) k = 1 + rng() % 7;
    if (rng() % 10 != 0) {
      const std::string_view p = r->PeekLine(k);
      if (p.empty()) {
        ++empty;
      } else {
        peeked.emplace_back(got.size() + k - 1, std::string(p));
      }
    }
    if (!r->Next(&l)) break;
    got.emplace_back(l.text);
  }
  ASSERT_EQ(got, want);
  ASSERT_GT(peeked.size(), want.size() / 2);
  for (const auto& [i, text] : peeked) {
    ASSERT_LT(i, want.size());
    ASSERT_EQ(text, want[i]) << "line " << i;
  }
  EXPECT_LT(empty, want.size() / 100);  // only where the buffer ends
  EXPECT_TRUE(r->PeekLine(1).empty());
  EXPECT_TRUE(r->PeekLine(0).empty());
}

TEST(LineReaderTest, CsvQuotesHoldNewlinesAndLineNumbersCountThem) {
  LineReaderOptions o;
  o.csv_quotes = true;
  auto r = LineReader::FromString("h\n\"x\ny\",1\nz\n", o);
  std::vector<std::string> t;
  auto lines = ReadAll(*r, &t);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[1], "\"x\ny\",1");
  EXPECT_EQ(lines[2].line_no, 4);
}

TEST(LineReaderTest, OversizedRecordIsTruncatedFlaggedAndSkipped) {
  LineReaderOptions o;
  o.max_record_bytes = 64;
  const std::string big(6 << 20, 'x');  // larger than the whole read buffer
  auto r = LineReader::FromString("ok\n" + big + "\nafter\n", o);
  std::vector<std::string> t;
  auto lines = ReadAll(*r, &t);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_TRUE(lines[1].truncated);
  EXPECT_EQ(t[1].size(), 64u);
  EXPECT_EQ(lines[1].full_size, big.size());
  EXPECT_EQ(t[2], "after");
  EXPECT_EQ(lines[2].line_no, 3);
}

TEST(LineReaderTest, GzipIsRecognisedByMagicAndMatchesThePlainText) {
  std::string text;
  for (int i = 0; i < 100000; ++i) text += "line " + std::to_string(i) + "\n";
  std::vector<std::string> plain, gz;
  auto a = LineReader::FromString(text, {});
  ReadAll(*a, &plain);
  auto b = LineReader::FromString(Gzip(text), {});
  ReadAll(*b, &gz);
  EXPECT_TRUE(b->gzip());
  EXPECT_EQ(plain, gz);
  EXPECT_EQ(gz.size(), 100000u);
}

TEST(LineReaderTest, GzipFileIsInflatedOnAnotherThreadWithConcatenatedMembers) {
  char path[] = "/tmp/vigil_lr_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string text;
  for (int i = 0; i < 200000; ++i) text += "row," + std::to_string(i) + "\n";
  const std::string data = Gzip(text.substr(0, text.size() / 2)) + Gzip(text.substr(text.size() / 2));
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  close(fd);
  auto r = LineReader::Open(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> t;
  ReadAll(**r, &t);
  EXPECT_EQ(t.size(), 200000u);
  EXPECT_EQ(t.back(), "row,199999");
  unlink(path);
}

TEST(LineReaderTest, TruncatedGzipIsADataLossError) {
  char path[] = "/tmp/vigil_lr_XXXXXX";
  int fd = mkstemp(path);
  std::string text(100000, 'a');
  std::string data = Gzip(text);
  data.resize(data.size() / 2);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  close(fd);
  auto r = LineReader::Open(path, {});
  ASSERT_TRUE(r.ok());
  LineReader::Line l;
  while ((*r)->Next(&l)) {
  }
  EXPECT_EQ((*r)->status().code(), absl::StatusCode::kDataLoss);
  unlink(path);
}

TEST(LineReaderTest, MissingFileIsNotFoundWithThePath) {
  auto r = LineReader::Open("/nonexistent/events.csv", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/events.csv"), absl::string_view::npos);
}

}  // namespace
}  // namespace vigil::event
