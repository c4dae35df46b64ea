// The one door to OpenBLAS: row-major single-precision matrix products and the thread count.
// Nothing else in the project imports COpenBLAS. The `parallel…` variants split one product into
// independent blocks run on the kernel threads (see `ComputeThreads`), each block a
// single-threaded OpenBLAS call: no OpenBLAS worker is left spinning while the element-wise
// kernels want the cores.
import COpenBLAS

/// Row-major matrix products through OpenBLAS.
public enum BLAS {
    /// C[M,N] = alpha * op(A) * op(B) + beta * C, all row-major and contiguous.
    /// - Parameters: `a` is [M,K] (or [K,M] when `transposeA`), `b` is [K,N] (or [N,K] when `transposeB`).
    @inlinable
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float = 0,
        c: UnsafeMutablePointer<Float>
    ) {
        sgemm(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: transposeA ? m : k, b: b, ldb: transposeB ? k : n, beta: beta, c: c, ldc: n)
    }

    /// The same product on sub-matrices: `lda`, `ldb`, `ldc` are the row strides of the stored matrices.
    @inlinable
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The number of threads OpenBLAS uses for one call.
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// Like `sgemm`, with the N columns of C split into blocks (multiples of 16) computed in
    /// parallel on the kernel threads. Same result up to nothing: each C element is computed by
    /// exactly one call, in the same order.
    static func parallelSgemm(
        transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float = 0, c: UnsafeMutablePointer<Float>,
        threads: Int
    ) {
        let blocks = (n + 15) / 16
        let lda = transposeA ? m : k, ldb = transposeB ? k : n
        parallelChunks(blocks, threads: threads, minimumChunk: 8) { range in
            let first = range.lowerBound * 16, last = min(n, range.upperBound * 16)
            sgemm(
                transposeA: transposeA, transposeB: transposeB, m: m, n: last - first, k: k, alpha: 1,
                a: a, lda: lda, b: transposeB ? b + first * k : b + first, ldb: ldb, beta: beta, c: c + first, ldc: n)
        }
    }

    /// C[M,N] += A[M,K] * op(B) with the long K dimension split across the kernel threads; op(B)
    /// is B[N,K]^T when `transposeB`, else B[K,N]. Every thread but the first writes a partial
    /// product to `scratch` ([threads-1, M, N]), added at the end. The summation order depends on
    /// the thread count (results differ by rounding).
    static func parallelSgemmSplitK(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, transposeB: Bool,
        c: UnsafeMutablePointer<Float>, scratch: Scratch, threads: Int
    ) {
        let threads = min(threads, max(1, k / 256))
        let ldb = transposeB ? k : n
        if threads <= 1 {
            sgemm(
                transposeA: false, transposeB: transposeB, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: ldb,
                beta: 1, c: c, ldc: n)
            return
        }
        let partials = scratch.reserve((threads - 1) * m * n)
        concurrentlyPerform(iterations: threads) { thread in
            let first = k * thread / threads, last = k * (thread + 1) / threads
            let target = thread == 0 ? c : partials + (thread - 1) * m * n
            sgemm(
                transposeA: false, transposeB: transposeB, m: m, n: n, k: last - first, alpha: 1,
                a: a + first, lda: k, b: transposeB ? b + first : b + first * n, ldb: ldb, beta: thread == 0 ? 1 : 0,
                c: target, ldc: n)
        }
        for thread in 1..<threads {
            let partial = partials + (thread - 1) * m * n
            for index in 0..<(m * n) { c[index] += partial[index] }
        }
    }
}

import Dispatch
