// The CPU check that keeps an engine built for x86-64-v3 from dying on SIGILL on an older CPU.
import XCTest
import Foundation
import Host

final class CPUFeaturesTests: XCTestCase {
    func testMissingFeaturesAreNamed() {
        let modern = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave\n"
        XCTAssertEqual(CPUFeatures.missing(CPUFeatures.x86_64_v3, cpuinfo: modern), [])
        let sandyBridge = "processor\t: 0\nflags\t\t: fpu sse2 sse4_2 avx xsave\nbugs\t\t: avx2\n"
        XCTAssertEqual(
            CPUFeatures.missing(CPUFeatures.x86_64_v3, cpuinfo: sandyBridge),
            ["avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe"])
        // The name of the field is not a flag, and a text without flags cannot be judged.
        XCTAssertEqual(CPUFeatures.missing(["flags"], cpuinfo: "flags : avx"), ["flags"])
        XCTAssertEqual(CPUFeatures.missing(CPUFeatures.x86_64_v3, cpuinfo: "model name : something"), [])
    }
}
