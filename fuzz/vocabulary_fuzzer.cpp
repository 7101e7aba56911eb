// Vocabulary files (vocabulary.h: "token count" lines), as checkpoints and .qnz files hold them:
// whatever parses must write back to text that parses to the same vocabulary.
#include "fuzz_input.h"
#include "qnoise/vocabulary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const qnoise::Vocabulary vocabulary = qnoise::Vocabulary::from_text(text, "fuzz input");
    const std::string written = vocabulary.to_text();
    if (qnoise::Vocabulary::from_text(written, "written").to_text() != written)
      qnoise::fuzz::fail("a vocabulary does not read back as written");
    for (int64_t id = 0; id < vocabulary.size(); ++id)
      if (vocabulary.id(vocabulary.token(id)) != id) qnoise::fuzz::fail("token and id do not map back");
  });
  return 0;
}
