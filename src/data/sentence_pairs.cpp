#include "qnoise/sentence_pairs.h"

#include <algorithm>
#include <fstream>

#include "qnoise/error.h"

namespace qnoise {

namespace {

const std::vector<std::string>& mnli_label_names() {
  static const std::vector<std::string> names = {"entailment", "neutral", "contradiction"};
  return names;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
    fields.push_back(line.substr(start, tab - start));
  fields.push_back(line.substr(start));
  return fields;
}

// Index of the first header column named any of `names`, or -1.
int64_t find_column(const std::vector<std::string>& header, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    auto found = std::find(header.begin(), header.end(), name);
    if (found != header.end()) return found - header.begin();
  }
  return -1;
}

// Classes a file may label with integers 0..kMaxClasses-1: every class up to the largest gets a
// name and a classifier row, so label 999999999 would ask for a billion.
constexpr int64_t kMaxClasses = 1000;

// Label as an integer (>= 0), or -1 when the text is not one.
int64_t parse_integer_label(const std::string& text) {
  if (text.empty() || text.size() > 9) return -1;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

struct Columns {
  int64_t premise, hypothesis, label;
};

Columns find_columns(const std::vector<std::string>& header, const std::string& path, bool labels_required) {
  Columns columns{find_column(header, {"premise", "sentence1", "question"}),
                  find_column(header, {"hypothesis", "sentence2"}),
                  find_column(header, {"label", "gold_label"})};
  QNOISE_CHECK(columns.premise >= 0, path, ":1: no premise column (premise or sentence1) in the header");
  QNOISE_CHECK(columns.hypothesis >= 0, path, ":1: no hypothesis column (hypothesis or sentence2) in the header");
  QNOISE_CHECK(columns.label >= 0 || !labels_required, path,
               ":1: no label column (label or gold_label) in the header");
  return columns;
}

}  // namespace

SentencePairSet read_sentence_pairs(const std::string& path, bool labels_required) {
  std::ifstream file(path);
  QNOISE_CHECK(file.good(), "cannot open sentence-pair file '", path, "'");
  std::string line;
  QNOISE_CHECK(std::getline(file, line), path, ": empty file, expected a header row");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto header = split_tabs(line);
  const Columns columns = find_columns(header, path, labels_required);
  enum class LabelKind { Unknown, Integer, Name } kind = LabelKind::Unknown;
  SentencePairSet set;
  int64_t max_label = -1;
  for (int64_t number = 2; std::getline(file, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto fields = split_tabs(line);
    QNOISE_CHECK(fields.size() == header.size(), path, ":", number, ": ", fields.size(),
                 " columns, the header has ", header.size());
    if (columns.label < 0) {
      set.pairs.push_back({fields[columns.premise], fields[columns.hypothesis], -1});
      continue;
    }
    const std::string& label = fields[columns.label];
    const auto& names = mnli_label_names();
    const auto name = std::find(names.begin(), names.end(), label);
    const int64_t integer = parse_integer_label(label);
    QNOISE_CHECK(integer >= 0 || name != names.end(), path, ":", number, ": bad label '", label,
                 "' (expected an integer >= 0 or entailment/neutral/contradiction)");
    const LabelKind this_kind = integer >= 0 ? LabelKind::Integer : LabelKind::Name;
    QNOISE_CHECK(kind == LabelKind::Unknown || kind == this_kind, path, ":", number, ": label '", label,
                 "' mixes integer and named labels");
    kind = this_kind;
    const int64_t id = integer >= 0 ? integer : name - names.begin();
    QNOISE_CHECK(id < kMaxClasses, path, ":", number, ": label ", id, " is beyond the ", kMaxClasses,
                 " classes a pairs task may have");
    max_label = std::max(max_label, id);
    set.pairs.push_back({fields[columns.premise], fields[columns.hypothesis], id});
  }
  QNOISE_CHECK(!set.pairs.empty(), path, ": no sentence pairs after the header");
  set.labelled = columns.label >= 0;
  if (!set.labelled) return set;
  if (kind == LabelKind::Name) {
    set.label_names = mnli_label_names();
  } else {
    for (int64_t i = 0; i <= max_label; ++i) set.label_names.push_back(std::to_string(i));
  }
  return set;
}

}  // namespace qnoise
