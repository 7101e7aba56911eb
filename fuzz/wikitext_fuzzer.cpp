// WikiText-format corpora (text_corpus.h): the input is the train, valid and test files separated
// by NUL bytes, then a prompt for `qnoise generate` after a third NUL. A corpus that loads is cut
// into LM windows, and the prompt is encoded with its vocabulary and decoded back.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "qnoise/text_corpus.h"

namespace {

std::vector<std::string> split_at_nul(const uint8_t* data, size_t size, size_t parts) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0 && out.size() < parts) {
      out.emplace_back();
    } else {
      out.back().push_back(static_cast<char>(data[i]));
    }
  }
  out.resize(parts);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qnoise::fuzz::init_libtorch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnoise::fuzz::InputFile directory(".wikitext");
  std::filesystem::create_directories(directory.path());
  const auto parts = split_at_nul(data, size, 4);
  const char* splits[] = {"train", "valid", "test"};
  for (int i = 0; i < 3; ++i)
    std::ofstream(directory.path() + "/wiki." + splits[i] + ".tokens", std::ios::binary) << parts[i];
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const qnoise::TextCorpus corpus =
        qnoise::load_wikitext(directory.path(), qnoise::VocabularyOptions().set_min_count(1).set_max_size(64));
    const std::vector<int64_t> ids = qnoise::encode_prompt(parts[3], corpus.vocabulary);
    qnoise::decode_tokens(ids, corpus.vocabulary);
    qnoise::LmBatcher batcher(corpus.valid, 1, 8);
    for (int64_t w = 0; w < batcher.size() && w < 4; ++w) batcher.batch(w);
  });
  return 0;
}
