// The generalise action's costs: URL and referrer rewriting per call, and the
// user-agent parser's load (once per start), uncached parse (first sight of a
// header) and cached parse (every repeat).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "privacy/url.h"
#include "privacy/user_agent.h"

namespace {

constexpr const char* kRegexesPath = "/usr/share/uap-core/regexes.yaml";

const std::vector<std::string>& Urls() {
  static const std::vector<std::string> urls = {
      "https://app.example.com/org/123/projects/550e8400-e29b-41d4-a716-446655440000/settings",
      "https://www.example.com/blog/how-to-grow?utm_source=news&utm_medium=email&fbclid=IwAR3xyz",
      "https://example.com/reset/Xk3pQ9zLm2Vb7nR4tY8wA1?email=jane%40example.com#top",
      "/pricing",
  };
  return urls;
}

const std::vector<std::string>& UserAgents() {
  static const std::vector<std::string> user_agents = {
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/120.0.0.0 Safari/537.36",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
      "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
      "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
  };
  return user_agents;
}

const minpanel::privacy::UserAgentParser& Parser() {
  static const std::unique_ptr<minpanel::privacy::UserAgentParser> parser = [] {
    auto loaded = minpanel::privacy::UserAgentParser::Load(kRegexesPath);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      std::abort();
    }
    return std::move(loaded).value();
  }();
  return *parser;
}

void BM_GeneraliseUrl(benchmark::State& state) {
  const minpanel::privacy::UrlPolicy policy;
  size_t url_idx = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(minpanel::privacy::GeneraliseUrl(Urls()[url_idx], policy));
    url_idx = (url_idx + 1) % Urls().size();
  }
}
BENCHMARK(BM_GeneraliseUrl);

void BM_ReferrerHost(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        minpanel::privacy::ReferrerHost("https://www.google.com/search?q=jane+doe&hl=en"));
  }
}
BENCHMARK(BM_ReferrerHost);

void BM_UserAgentLoad(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = minpanel::privacy::UserAgentParser::Load(kRegexesPath);
    benchmark::DoNotOptimize(loaded.ok());
  }
}
BENCHMARK(BM_UserAgentLoad)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_UserAgentParseUncached(benchmark::State& state) {
  size_t agent_idx = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(Parser().ParseUncached(UserAgents()[agent_idx]));
    agent_idx = (agent_idx + 1) % UserAgents().size();
  }
}
BENCHMARK(BM_UserAgentParseUncached)->Unit(benchmark::kMicrosecond);

void BM_UserAgentParseCached(benchmark::State& state) {
  size_t agent_idx = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(Parser().Parse(UserAgents()[agent_idx]));
    agent_idx = (agent_idx + 1) % UserAgents().size();
  }
}
BENCHMARK(BM_UserAgentParseCached);

}  // namespace

BENCHMARK_MAIN();
