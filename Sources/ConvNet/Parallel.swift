// Thread control: how many threads OpenBLAS uses inside one matrix product, and how many the
// element-wise kernels (im2col, pooling, activations) use through `concurrentPerform`.
// It holds no thread pool of its own: Dispatch's global pool runs the chunks.
import Dispatch

/// Process-wide thread settings for the engine.
public enum ComputeThreads {
    /// Set by `configure` before a run's work starts, read by the kernels: nonisolated(unsafe) because it
    /// is never written while kernels run (a run configures it once, on its own thread, up front).
    nonisolated(unsafe) private static var kernelThreads = 2

    /// Threads for the element-wise kernels (im2col, col2im, pooling, ReLU, dropout). At least 1.
    public static var kernelThreadCount: Int {
        get { kernelThreads }
        set { kernelThreads = max(1, newValue) }
    }

    /// Uses `threads` threads for everything: the kernels and the convolution matrix products
    /// are split across them by the engine itself, so OpenBLAS is set to one thread per call
    /// (its own workers would otherwise spin on the cores the kernels need).
    public static func configure(threads: Int) {
        kernelThreadCount = threads
        BLAS.threadCount = 1
    }
}

/// Splits `0..<count` into at most `threads` contiguous chunks and runs `body` on each chunk, in
/// parallel when there is more than one. Chunks never overlap, so a body that writes only inside
/// its own range needs no locking.
@inline(__always)
public func parallelChunks(_ count: Int, threads: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let tasks = min(threads, max(1, count / max(1, minimumChunk)))
    if tasks <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    concurrentlyPerform(iterations: tasks) { task in
        let low = count * task / tasks
        let high = count * (task + 1) / tasks
        if low < high { body(low..<high) }
    }
}

/// `DispatchQueue.concurrentPerform` for the engine's kernels, whose bodies capture raw pointers and
/// so are not `Sendable`. Sound because the call is synchronous (every iteration has finished when
/// it returns, so nothing outlives the caller's buffers) and each kernel's iterations write disjoint
/// parts of its output: the data-race freedom the compiler cannot see is the partition of the work.
@inline(__always)
func concurrentlyPerform(iterations: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: iterations) { body($0) }
    }
}

/// A growable scratch allocation of Floats owned by one layer; it grows to the largest batch
/// seen and is then reused, so the hot path allocates nothing. Contents are not zeroed.
final class Scratch {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        capacity = 0
        pointer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    }

    deinit { pointer.deallocate() }

    /// A buffer of at least `count` Floats; the previous contents are lost when it grows.
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
            capacity = count
        }
        return pointer
    }
}
