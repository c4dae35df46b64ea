// The one door to OpenBLAS: a row-major single-precision matrix product and the thread count.
// Nothing else in the project imports COpenBLAS.
import COpenBLAS

/// Row-major matrix products through OpenBLAS.
public enum BLAS {
    /// C[M,N] = alpha * op(A) * op(B) + beta * C, all row-major.
    /// - Parameters: `a` is [M,K] (or [K,M] when `transposeA`), `b` is [K,N] (or [N,K] when `transposeB`).
    @inlinable
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float = 0,
        c: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(transposeA ? m : k), b, Int32(transposeB ? k : n), beta, c, Int32(n))
    }

    /// The number of threads OpenBLAS uses for one call.
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }
}
