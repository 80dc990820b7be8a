// A fixed-bucket latency histogram: lock-free to record from a worker, cheap to read from the I/O
// thread, no allocation per request. Buckets follow Prometheus' convention (upper bounds, +Inf).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace nsagent {

class latency_histogram {
public:
    // Upper bounds in seconds: 10 us to 10 s.
    static constexpr std::array<double, 19> bounds = {1e-5,   2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                                                      2.5e-3, 5e-3,   1e-2, 2.5e-2, 5e-2, 0.1,  0.25,
                                                      0.5,    1.0,    2.5,  5.0,  10.0};

    void record(std::chrono::nanoseconds d) noexcept
    {
        double s = std::chrono::duration<double>(d).count();
        std::size_t i = 0;
        while (i < bounds.size() && s > bounds[i])
            ++i;
        counts_[i].fetch_add(1, std::memory_order_relaxed);
        sum_ns_.fetch_add(static_cast<std::uint64_t>(d.count() > 0 ? d.count() : 0), std::memory_order_relaxed);
    }

    struct snapshot {
        std::array<std::uint64_t, bounds.size() + 1> counts{}; // per bucket, not cumulative; last is +Inf
        std::uint64_t count = 0;
        double sum_seconds = 0;

        // The upper bound of the bucket holding quantile q (0 < q <= 1), in seconds; 0 if empty.
        double quantile(double q) const noexcept
        {
            if (!count)
                return 0;
            auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count) + 0.5);
            std::uint64_t seen = 0;
            for (std::size_t i = 0; i < counts.size(); ++i) {
                seen += counts[i];
                if (seen >= rank && seen > 0)
                    return i < bounds.size() ? bounds[i] : bounds.back();
            }
            return bounds.back();
        }
    };

    snapshot read() const noexcept
    {
        snapshot s;
        for (std::size_t i = 0; i < counts_.size(); ++i) {
            s.counts[i] = counts_[i].load(std::memory_order_relaxed);
            s.count += s.counts[i];
        }
        s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
        return s;
    }

private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};
    std::atomic<std::uint64_t> sum_ns_{0};
};

} // namespace nsagent
