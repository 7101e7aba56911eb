#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qnoise/atomic_file.h"
#include "qnoise/error.h"

namespace {
std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}
}  // namespace

TEST(AtomicFile, ReplacesTheFileWholeAndLeavesNoTemporary) {
  const std::string directory = testing::TempDir() + "qnoise_atomic_file";
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  const std::string path = directory + "/out.txt";
  qnoise::write_file_atomically(path, "first");
  qnoise::write_file_atomically(path, "second version");
  EXPECT_EQ(read_file(path), "second version");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) ++files, (void)entry;
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, AFailedWriteNamesTheFileAndKeepsTheOldOne) {
  const std::string directory = testing::TempDir() + "qnoise_atomic_file_fail";
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory + "/target_is_a_directory");
  // Renaming a file over a non-empty directory fails: the directory must survive untouched.
  std::ofstream(directory + "/target_is_a_directory/keep.txt") << "kept";
  try {
    qnoise::write_file_atomically(directory + "/target_is_a_directory", "new");
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("target_is_a_directory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(directory + "/target_is_a_directory/keep.txt"), "kept");
  EXPECT_THROW(qnoise::write_file_atomically("/nonexistent-dir/x.txt", "x"), qnoise::Error);
}

TEST(AtomicFile, StreamedContentArrivesWholeAndAFailingProducerKeepsTheOldFile) {
  const std::string directory = testing::TempDir() + "qnoise_atomic_file_stream";
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  const std::string path = directory + "/out.txt";
  qnoise::write_file_atomically(path, [](const qnoise::AppendBytes& append) {
    for (int i = 0; i < 3; ++i) append("piece ", 6);
    append("", 0);
  });
  EXPECT_EQ(read_file(path), "piece piece piece ");
  // A producer that fails half-way: the error propagates, the old file stays, no temporary is left.
  EXPECT_THROW(qnoise::write_file_atomically(path,
                                             [](const qnoise::AppendBytes& append) {
                                               append("half", 4);
                                               throw qnoise::Error("producer failed");
                                             }),
               qnoise::Error);
  EXPECT_EQ(read_file(path), "piece piece piece ");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) ++files, (void)entry;
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, NeverWritesThroughAPlantedSymlinkAndKeepsModes) {
  const std::string directory = testing::TempDir() + "qnoise_atomic_file_symlink";
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  const std::string path = directory + "/out.txt";
  // The temporary names of earlier versions (path.tmp.<pid>) planted as symlinks to a victim.
  std::ofstream(directory + "/victim.txt") << "victim";
  std::filesystem::create_symlink(directory + "/victim.txt", path + ".tmp." + std::to_string(getpid()));
  qnoise::write_file_atomically(path, "content");
  EXPECT_EQ(read_file(path), "content");
  EXPECT_EQ(read_file(directory + "/victim.txt"), "victim");
  // A new file: 0666 less the umask; a replaced file keeps its mode.
  const mode_t mask = umask(022);
  umask(mask);
  const auto permissions = [](const std::string& p) {
    return static_cast<unsigned>(std::filesystem::status(p).permissions());
  };
  EXPECT_EQ(permissions(path), 0666u & ~static_cast<unsigned>(mask));
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  qnoise::write_file_atomically(path, "again");
  EXPECT_EQ(permissions(path), 0600u);
  EXPECT_EQ(read_file(path), "again");
}

TEST(AtomicFile, ErrorsGiveTheSystemsReason) {
  try {
    qnoise::write_file_atomically("/nonexistent-dir/x.txt", "x");
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
}

TEST(AtomicFile, TemporariesOfDeadWritersAreRemovedByTheNextWrite) {
  const std::string directory = testing::TempDir() + "qnoise_atomic_stale";
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  const std::string path = directory + "/model.pt";
  const pid_t dead = fork();  // a pid that is surely gone once reaped
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string stale = path + ".tmp." + std::to_string(dead) + ".Ab12Cd";
  const std::string live = path + ".tmp." + std::to_string(getpid()) + ".Xy34Zw";  // a writer still running
  const std::string other = directory + "/other.pt.tmp." + std::to_string(dead) + ".Ab12Cd";  // another file's
  for (const auto& name : {stale, live, other}) std::ofstream(name) << "partial";
  qnoise::write_file_atomically(path, "done");
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_TRUE(std::filesystem::exists(other));
  EXPECT_EQ(read_file(path), "done");
}
