// The default thread count: cgroup v2 `cpu.max` quotas read along the process's cgroup path, against
// hand-written /proc/self/cgroup and cpu.max contents of the kinds Kubernetes, Docker and systemd write.
import Foundation
import XCTest

@testable import Host

final class AvailableCPUsTests: XCTestCase {
    func testCPUMaxGivesWholeCPUsRoundedUp() {
        XCTAssertEqual(AvailableCPUs.cpus(cpuMax: "200000 100000\n"), 2)
        XCTAssertEqual(AvailableCPUs.cpus(cpuMax: "150000 100000"), 2, "1.5 CPUs: 2 threads")
        XCTAssertEqual(AvailableCPUs.cpus(cpuMax: "50000 100000"), 1)
        XCTAssertEqual(AvailableCPUs.cpus(cpuMax: "1600000 100000"), 16)
        for unlimited in ["max 100000\n", "max", "", "100000", "-1 100000", "x y", "100000 0"] {
            XCTAssertNil(AvailableCPUs.cpus(cpuMax: unlimited), "'\(unlimited)'")
        }
        XCTAssertNil(AvailableCPUs.cpus(cpuMax: nil))
    }

    func testTheTightestQuotaOnThePathToTheRootWins() {
        let pod = "0::/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-ab.scope\n"
        var asked: [String] = []
        let files = [
            "/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-ab.scope": "max 100000\n",
            "/kubepods.slice/kubepods-burstable.slice/pod1.slice": "300000 100000\n",
            "/kubepods.slice": "max 100000\n",
        ]
        let limit = AvailableCPUs.cgroupV2Limit(processCgroups: pod) { path in
            asked.append(path)
            return files[path]
        }
        XCTAssertEqual(limit, 3)
        XCTAssertEqual(
            asked,
            [
                "/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-ab.scope",
                "/kubepods.slice/kubepods-burstable.slice/pod1.slice", "/kubepods.slice/kubepods-burstable.slice",
                "/kubepods.slice", "",
            ])
        let tighterAbove = AvailableCPUs.cgroupV2Limit(processCgroups: "0::/a/b\n") {
            ["/a/b": "400000 100000", "/a": "100000 100000"][$0]
        }
        XCTAssertEqual(tighterAbove, 1)
    }

    func testContainersAndHostsWithoutAQuota() {
        // A container with its own cgroup namespace sees itself at the root.
        XCTAssertEqual(AvailableCPUs.cgroupV2Limit(processCgroups: "0::/\n") { $0 == "" ? "200000 100000" : nil }, 2)
        XCTAssertNil(AvailableCPUs.cgroupV2Limit(processCgroups: "0::/user.slice/session-1.scope\n") { _ in nil })
        // cgroup v1 only (no 0:: line), or hybrid with the CPU controller on v1: Foundation's count stands.
        let v1 = "4:memory:/docker/ab\n2:cpu,cpuacct:/docker/ab\n1:name=systemd:/docker/ab\n"
        XCTAssertNil(AvailableCPUs.cgroupV2Limit(processCgroups: v1) { _ in "100000 100000" })
        XCTAssertNil(AvailableCPUs.cgroupV2Limit(processCgroups: nil) { _ in "100000 100000" })
    }

    func testThisProcessGetsAtLeastOneAndNoMoreThanFoundationCounts() {
        XCTAssertGreaterThanOrEqual(AvailableCPUs.count, 1)
        XCTAssertLessThanOrEqual(AvailableCPUs.count, max(1, ProcessInfo.processInfo.activeProcessorCount))
    }
}
