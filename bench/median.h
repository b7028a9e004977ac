// The median of a benchmark's rounds: the upper middle of an even count.
// The machine is noisy, so benchmarks report medians of several runs.
#pragma once

#include <algorithm>
#include <vector>

namespace minpanel::bench {

inline double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace minpanel::bench
