// The uploader's metrics as the exporter reads them from the uploader's state directory.
#include "exporter/upload_metrics.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace {

const prometheus::MetricFamily* family(const std::vector<prometheus::MetricFamily>& fs,
                                       const std::string& name) {
  for (const auto& f : fs) {
    if (f.name == name) {
      return &f;
    }
  }
  return nullptr;
}

} // namespace

TEST_CASE("upload metrics from the uploader's state files", "[upload_metrics]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("pc-upload-metrics-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  SECTION("no files: no uploader, no metrics") {
    CHECK(exporter::upload_families(dir.string(), 1000).empty());
  }
  SECTION("counters, backlog and the oldest pending crash's age") {
    std::ofstream(dir / ".counters.json")
        << R"({"record/ok": 5, "core/failed": 2, "groups/ok": 1, "x/y": 9})";
    std::ofstream(dir / ".status.json")
        << R"({"backlog": 3, "oldest_pending": 400, "last_sweep": 990})";
    const auto fs = exporter::upload_families(dir.string(), 1000);
    const auto* uploads = family(fs, "processcore_uploads_total");
    REQUIRE(uploads != nullptr);
    REQUIRE(uploads->metric.size() == 8); // only the known kinds and results
    double record_ok = -1;
    double core_failed = -1;
    for (const auto& m : uploads->metric) {
      if (m.label[0].value == "record" && m.label[1].value == "ok") {
        record_ok = m.counter.value;
      }
      if (m.label[0].value == "core" && m.label[1].value == "failed") {
        core_failed = m.counter.value;
      }
    }
    CHECK(record_ok == 5);
    CHECK(core_failed == 2);
    REQUIRE(family(fs, "processcore_upload_backlog") != nullptr);
    CHECK(family(fs, "processcore_upload_backlog")->metric[0].gauge.value == 3);
    CHECK(family(fs, "processcore_upload_oldest_pending_seconds")->metric[0].gauge.value == 600);
    CHECK(family(fs, "processcore_upload_last_sweep_timestamp_seconds")->metric[0].gauge.value ==
          990);
  }
  SECTION("values of the wrong type are left out") {
    std::ofstream(dir / ".status.json") << R"({"backlog": -1, "oldest_pending": "x"})";
    const auto fs = exporter::upload_families(dir.string(), 1000);
    CHECK(family(fs, "processcore_upload_backlog") == nullptr);
    CHECK(family(fs, "processcore_upload_oldest_pending_seconds") == nullptr);
    CHECK(family(fs, "processcore_uploads_total") != nullptr);
  }
  std::filesystem::remove_all(dir);
}
