// ns per read for the masked parameters of its audit record
// (service/audit_params.h; docs/benchmarks.md, "Masked parameters"): a
// typical dashboard query (a segmentation of two events, a filter or two,
// a breakdown), the same with a distinct id filter and a planted email, a
// 16-step funnel (2.5 KB, under the cap), an export's parameters, and for
// scale the SHA-256 of the query that every record already carried.
#include <benchmark/benchmark.h>

#include <string>

#include "audit/audit.h"
#include "privacy/detectors.h"
#include "service/audit_params.h"
#include "service/service.h"

namespace {

using minpanel::privacy::Detectors;

const std::string kTypicalQuery =
    R"({"kind":"segmentation","from":"-30d","to":"now","unit":"day","measure":"unique",)"
    R"("events":["Signed Up",{"event":"Purchase","filters":[{"property":"plan","op":"in",)"
    R"("values":["pro","team"]},{"property":"price","op":"ge","value":49.99}]}],)"
    R"("filters":[{"property":"$browser","op":"eq","value":"Chrome"}],)"
    R"("breakdown":["country"]})";

const std::string kMaskedQuery =
    R"({"kind":"segmentation","from":"-30d","to":"now","unit":"day","measure":"total",)"
    R"("events":["Mailed jane.doe@example.com",{"event":"Purchase","filters":[)"
    R"({"property":"distinct_id","op":"in","values":["u-1","u-2","u-3"]},)"
    R"({"property":"note","op":"contains","value":"call +44 20 7946 0958"},)"
    R"({"property":"api_token","op":"eq","value":"abc"}]}],"breakdown":["country"]})";

std::string LargeFunnel() {
  std::string query = R"({"kind":"funnel","from":"-90d","to":"now","steps":[)";
  for (int step_idx = 0; step_idx < 16; ++step_idx) {
    query += (step_idx == 0 ? "" : ",") + std::string(R"({"event":"Step )") +
             std::to_string(step_idx) +
             R"(","filters":[{"property":"plan","op":"in","values":["pro","team","free"]},)"
             R"({"property":"utm_source","op":"eq","value":"newsletter"}]})";
  }
  return query + R"(],"window":{"value":7,"unit":"day"},"breakdown":["country"]})";
}

void BM_TypicalQuery(benchmark::State& state) {
  const Detectors detectors;
  for (auto _ : state) {
    benchmark::DoNotOptimize(minpanel::service::QueryAuditParams(kTypicalQuery, detectors));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_QueryWithMaskedValues(benchmark::State& state) {
  const Detectors detectors;
  for (auto _ : state) {
    benchmark::DoNotOptimize(minpanel::service::QueryAuditParams(kMaskedQuery, detectors));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_LargeFunnel(benchmark::State& state) {
  const Detectors detectors;
  const std::string query = LargeFunnel();
  for (auto _ : state) {
    benchmark::DoNotOptimize(minpanel::service::QueryAuditParams(query, detectors));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["query_bytes"] = static_cast<double>(query.size());
}

void BM_Export(benchmark::State& state) {
  const Detectors detectors;
  minpanel::service::ExportOptions options;
  options.from_date = "2026-11-01";
  options.to_date = "2026-11-30";
  options.event_names_json = R"(["Purchase","Signed Up"])";
  options.limit = 100000;
  for (auto _ : state) {
    benchmark::DoNotOptimize(minpanel::service::ExportAuditParams(options, detectors));
  }
  state.SetItemsProcessed(state.iterations());
}

// What every query record already cost: the hash of the query text.
void BM_TypicalQuerySha256(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(minpanel::audit::Sha256Hex(kTypicalQuery));
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_TypicalQuery);
BENCHMARK(BM_QueryWithMaskedValues);
BENCHMARK(BM_LargeFunnel);
BENCHMARK(BM_Export);
BENCHMARK(BM_TypicalQuerySha256);

}  // namespace

BENCHMARK_MAIN();
