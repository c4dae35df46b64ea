// How many CPUs this process can use, the default for every `--threads`. Foundation's count follows the
// CPU affinity and cgroup v1 quotas but not cgroup v2's `cpu.max`, which is what a container's CPU
// limit becomes on current Linux hosts (Kubernetes nodes, Docker, Podman): without it a container
// limited to 2 CPUs on a 64-core node would start 64 OpenBLAS threads and be throttled.
import Foundation

public enum AvailableCPUs {
    /// Foundation's count, capped by the cgroup v2 CPU quota of this process's cgroup or any ancestor
    /// (rounded up: 1.5 CPUs give 2 threads). At least 1.
    public static let count: Int = {
        let counted = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let limit = cgroupV2Limit(
            processCgroups: try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
            cpuMax: { try? String(contentsOfFile: "/sys/fs/cgroup\($0)/cpu.max", encoding: .utf8) })
        return min(counted, limit ?? counted)
    }()

    /// The tightest `cpu.max` quota from the process's cgroup v2 path (the `0::` line of
    /// /proc/self/cgroup) up to the root, in whole CPUs; nil when no level sets one.
    /// - Parameter cpuMax: the contents of `cpu.max` in the cgroup at a path ("" for the root), if any.
    static func cgroupV2Limit(processCgroups: String?, cpuMax: (String) -> String?) -> Int? {
        guard let line = processCgroups?.split(separator: "\n").first(where: { $0.hasPrefix("0::/") }) else {
            return nil
        }
        var levels = line.dropFirst(3).split(separator: "/").map(String.init)
        var limit: Int?
        while true {
            let path = levels.map { "/" + $0 }.joined()
            if let quota = cpus(cpuMax: cpuMax(path)) { limit = min(limit ?? quota, quota) }
            guard !levels.isEmpty else { return limit }
            levels.removeLast()
        }
    }

    /// "200000 100000" (quota and period in microseconds) is 2 CPUs; "max 100000" is no limit (nil).
    static func cpus(cpuMax: String?) -> Int? {
        guard let fields = cpuMax?.split(whereSeparator: \.isWhitespace), fields.count == 2,
            let quota = Double(fields[0]), let period = Double(fields[1]), quota > 0, period > 0
        else { return nil }
        return max(1, Int((quota / period).rounded(.up)))
    }
}
