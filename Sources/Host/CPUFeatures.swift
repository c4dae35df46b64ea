// Which instruction-set extensions a CPU has, from Linux's /proc/cpuinfo. The engine (ConvNet) is
// compiled for a CPU level (Package.swift); the command checks the CPU against it before any engine
// code runs, so that an old CPU gets an error message instead of SIGILL. This file is compiled
// without that level, like everything outside ConvNet.

/// CPU feature checks.
public enum CPUFeatures {
    /// The /proc/cpuinfo flags that x86-64-v3 (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE) implies.
    public static let x86_64_v3 = ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]

    /// The features of `required` missing from the first `flags` line of `cpuinfo` (the text of
    /// /proc/cpuinfo); empty when all are there or when the text has no flags line to judge by.
    public static func missing(_ required: [String], cpuinfo: String) -> [String] {
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        let flags = Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        return required.filter { !flags.contains($0) }
    }
}
