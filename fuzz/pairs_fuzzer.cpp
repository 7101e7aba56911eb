// Sentence-pair TSV files (sentence_pairs.h), with and without a required label column.
#include "fuzz_input.h"
#include "qnoise/sentence_pairs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnoise::fuzz::InputFile file(".tsv");
  const std::string& path = file.write(data, size);
  for (bool labels_required : {true, false}) {
    qnoise::fuzz::expect_only_qnoise_errors([&] {
      const qnoise::SentencePairSet set = qnoise::read_sentence_pairs(path, labels_required);
      for (const auto& pair : set.pairs)
        if (set.labelled ? pair.label < 0 || pair.label >= set.n_labels() : pair.label != -1)
          qnoise::fuzz::fail("a pair's label is outside the label names");
    });
  }
  return 0;
}
