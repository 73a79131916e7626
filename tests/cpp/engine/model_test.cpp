// Model: loading, declared specs, load errors, and one session shared by Model::run, a Run and
// concurrent callers.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine_models.hpp"
#include "check.hpp"
#include "ringflow/ringflow.hpp"
#include "tensors.hpp"

using namespace ringflow;

namespace {

// A file in the temp directory holding `contents`, removed when the test ends.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& contents)
      : path_((std::filesystem::temp_directory_path() /
               ("ringflow-test-" + std::to_string(::getpid()) + "-" + name))
                  .string()) {
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

TEST(tiny_mlp_declares_its_input_and_output) {
  const Model& model = tiny_mlp();
  CHECK_EQ(model.path(), builtin_models().tiny_mlp);
  CHECK_EQ(model.input_specs().size(), 1u);
  CHECK_EQ(model.input_specs()[0].name, "input");
  CHECK_EQ(model.input_specs()[0].dtype, DType::Float32);
  CHECK_EQ(model.input_specs()[0].shape, (Shape{-1, 64}));
  CHECK_EQ(model.output_specs().size(), 1u);
  CHECK_EQ(model.output_specs()[0].name, "logits");
  CHECK_EQ(model.output_specs()[0].dtype, DType::Float32);
  CHECK_EQ(model.output_specs()[0].shape, (Shape{-1, 10}));
}

TEST(a_missing_file_is_a_model_error_naming_the_path) {
  const std::string missing = "/nonexistent-ringflow-dir/missing.onnx";
  CHECK_THROWS_WITH(Model(missing), ModelError, missing);
}

TEST(a_corrupt_file_is_a_model_error_naming_the_path) {
  const TempFile garbage("garbage.onnx", "this is not an ONNX model\n");
  CHECK_THROWS_WITH(Model(garbage.path()), ModelError, garbage.path());
  const TempFile empty("empty.onnx", "");
  CHECK_THROWS_WITH(Model(empty.path()), ModelError, empty.path());
}

TEST(model_run_checks_its_inputs_against_the_model) {
  const Tensor flat = Tensor::allocate(DType::Float32, {64});
  CHECK_THROWS_WITH(tiny_mlp().run({flat}), ShapeError, "[?, 64]");
  const Tensor doubles = Tensor::allocate(DType::Float64, {1, 64});
  CHECK_THROWS_WITH(tiny_mlp().run({doubles}), DTypeError, "float32 [?, 64]");
}

// A Run's workers write into preallocated outputs while Model::run lets ONNX Runtime allocate; on
// the same session and inputs the numbers must not differ by a bit.
TEST(model_run_and_a_run_agree_bit_for_bit) {
  const Model& model = tiny_mlp();
  Run run = Graph().add(model.graph()).build(std::vector<Tensor>{mlp_input(0)});
  for (int i = 0; i < 20; ++i) {
    const Sample expected = model.run({mlp_input(i)});
    CHECK_EQ(expected.names, (std::vector<std::string>{"logits"}));
    CHECK_EQ(expected.tensors[0].shape(), (Shape{1, 10}));
    run.push({mlp_input(i)});
    const std::optional<Sample> result = run.pull(5000);
    CHECK(result.has_value());
    CHECK(same_outputs(*result, expected));
  }
  // Otherwise agreement would prove nothing.
  CHECK(!same_outputs(model.run({mlp_input(0)}), model.run({mlp_input(1)})));
}

TEST(model_run_from_four_threads_matches_one_thread) {
  const Model& model = tiny_mlp();
  constexpr int kInputs = 50;
  std::vector<Sample> expected;
  for (int i = 0; i < kInputs; ++i) expected.push_back(model.run({mlp_input(i)}));

  std::atomic<int> mismatches{0};
  std::atomic<int> exceptions{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    // Copies of the handle share the one session, as Runs and Python threads do.
    threads.emplace_back([&expected, &mismatches, &exceptions, model = model, t] {
      for (int round = 0; round < 4 * kInputs; ++round) {
        const int i = (round + t * 13) % kInputs;
        try {
          if (!same_outputs(model.run({mlp_input(i)}), expected[i])) ++mismatches;
        } catch (const std::exception&) {
          ++exceptions;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK_EQ(exceptions.load(), 0);
  CHECK_EQ(mismatches.load(), 0);
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }
