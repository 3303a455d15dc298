// Strict matmul: C[M,N] = op(A)·op(B) under the numerics contract. Every
// output accumulates its products in increasing k, each product rounded on
// its own (MUL) before the add (ADD): no FMA, no split-K, no atomics. Tiling
// changes only where operands are staged, never the order of the adds.
//
// A block computes a 128×128 tile of C with 256 threads; a thread owns an
// 8×8 sub-tile, as four 4×4 pieces 64 rows and 64 columns apart, so its
// operands come from shared memory as float4 loads without bank conflicts.
// K advances MM_BK at a time through two shared-memory buffers: the next
// slice is fetched into registers while the current one is used.
//
// Out-of-range rows and columns are loaded as zero. A zero product cannot
// change a sum that started at +0 (the sum is never -0, and s + 0 == s
// otherwise), so edge tiles give the same bits as the contract.

#define MM_BM 128
#define MM_BN 128
#define MM_THREADS 256
#define MM_PAD 4 // keeps the transposed shared-memory stores conflict-free

template <int BK, bool TA, bool TB, bool CHECKED>
struct mm_tile {
    static constexpr int VEC = BK / 8; // float4s per thread per operand

    // load fetches the BK-slice starting at k0 of A's and B's tiles into
    // registers.
    static __device__ __forceinline__ void load(const float* __restrict__ A, const float* __restrict__ B,
                                                int M, int N, int K, int m0, int n0, int k0, int tid,
                                                float4 (&ra)[VEC], float4 (&rb)[VEC]) {
#pragma unroll
        for (int r = 0; r < VEC; ++r) {
            int v = tid + r * MM_THREADS;
            // A: element (m, k) of the tile.
            int m, k;
            if (TA) { k = v / (MM_BM / 4); m = (v % (MM_BM / 4)) * 4; } // contiguous along m
            else    { m = v / (BK / 4);    k = (v % (BK / 4)) * 4; }    // contiguous along k
            ra[r] = fetch(A, TA, m0 + m, k0 + k, M, K, TA ? M : K);
            // B: element (k, n) of the tile.
            int n, kb;
            if (TB) { n = v / (BK / 4);    kb = (v % (BK / 4)) * 4; }   // contiguous along k
            else    { kb = v / (MM_BN / 4); n = (v % (MM_BN / 4)) * 4; } // contiguous along n
            rb[r] = fetch(B, TB, k0 + kb, n0 + n, K, N, TB ? K : N);
        }
    }

    // fetch reads four consecutive elements of a row-major matrix X, along
    // its contiguous axis: X(r, c..c+3) when alongRows is false, else
    // X(r..r+3, c) of the logical matrix stored transposed. rows × cols is the
    // logical size and ld the stored row length.
    static __device__ __forceinline__ float4 fetch(const float* __restrict__ X, bool transposedStore,
                                                   int r, int c, int rows, int cols, int ld) {
        // Logical (r, c); the stored layout is contiguous along c unless
        // transposedStore, where it is contiguous along r.
        if constexpr (!CHECKED) {
            const float* p = transposedStore ? X + (long long)c * ld + r : X + (long long)r * ld + c;
            return *reinterpret_cast<const float4*>(p);
        }
        float out[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int rr = transposedStore ? r + i : r;
            int cc = transposedStore ? c : c + i;
            out[i] = (rr < rows && cc < cols)
                ? (transposedStore ? X[(long long)cc * ld + rr] : X[(long long)rr * ld + cc])
                : 0.0f;
        }
        return make_float4(out[0], out[1], out[2], out[3]);
    }

    // store puts the registers into shared memory, A k-major and B k-major.
    static __device__ __forceinline__ void store(float (*As)[MM_BM + MM_PAD], float (*Bs)[MM_BN + MM_PAD], int tid,
                                                 const float4 (&ra)[VEC], const float4 (&rb)[VEC]) {
#pragma unroll
        for (int r = 0; r < VEC; ++r) {
            int v = tid + r * MM_THREADS;
            if (TA) {
                int k = v / (MM_BM / 4), m = (v % (MM_BM / 4)) * 4;
                *reinterpret_cast<float4*>(&As[k][m]) = ra[r];
            } else {
                int m = v / (BK / 4), k = (v % (BK / 4)) * 4;
                As[k + 0][m] = ra[r].x; As[k + 1][m] = ra[r].y;
                As[k + 2][m] = ra[r].z; As[k + 3][m] = ra[r].w;
            }
            if (TB) {
                int n = v / (BK / 4), k = (v % (BK / 4)) * 4;
                Bs[k + 0][n] = rb[r].x; Bs[k + 1][n] = rb[r].y;
                Bs[k + 2][n] = rb[r].z; Bs[k + 3][n] = rb[r].w;
            } else {
                int k = v / (MM_BN / 4), n = (v % (MM_BN / 4)) * 4;
                *reinterpret_cast<float4*>(&Bs[k][n]) = rb[r];
            }
        }
    }
};

template <int BK, bool TA, bool TB, bool CHECKED>
__device__ __forceinline__ void matmul_strict(const float* __restrict__ A, const float* __restrict__ B,
                                              float* __restrict__ C, int M, int N, int K) {
    typedef mm_tile<BK, TA, TB, CHECKED> T;
    __shared__ __align__(16) float As[2][BK][MM_BM + MM_PAD];
    __shared__ __align__(16) float Bs[2][BK][MM_BN + MM_PAD];

    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int tilesN = (N + MM_BN - 1) / MM_BN;
    const long long tile = blockIdx.x;
    const int m0 = (int)(tile / tilesN) * MM_BM;
    const int n0 = (int)(tile % tilesN) * MM_BN;

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    float4 ra[T::VEC], rb[T::VEC];
    const int slices = (K + BK - 1) / BK;
    T::load(A, B, M, N, K, m0, n0, 0, tid, ra, rb);
    T::store(As[0], Bs[0], tid, ra, rb);
    __syncthreads();

    for (int s = 0; s < slices; ++s) {
        const int cur = s & 1;
        if (s + 1 < slices) T::load(A, B, M, N, K, m0, n0, (s + 1) * BK, tid, ra, rb);
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
            float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4 + 64]);
            float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
            float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4 + 64]);
            const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = ADD(acc[i][j], MUL(a[i], b[j]));
        }
        if (s + 1 < slices) T::store(As[cur ^ 1], Bs[cur ^ 1], tid, ra, rb);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
        if (CHECKED && row >= M) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int col = n0 + h * 64 + tx * 4;
            float* out = C + (long long)row * N + col;
            float4 v = make_float4(canon(acc[i][h * 4 + 0]), canon(acc[i][h * 4 + 1]),
                                   canon(acc[i][h * 4 + 2]), canon(acc[i][h * 4 + 3]));
            if (!CHECKED) {
                *reinterpret_cast<float4*>(out) = v;
            } else {
                if (col + 0 < N) out[0] = v.x;
                if (col + 1 < N) out[1] = v.y;
                if (col + 2 < N) out[2] = v.z;
                if (col + 3 < N) out[3] = v.w;
            }
        }
    }
}

// One entry point per transpose pair and edge handling; the Go side picks by
// shape: the unchecked kernels need M and N multiples of 128 and K a
// multiple of MM_BK. Slices of 16 with two blocks per multiprocessor (at
// most 128 registers a thread) measured fastest of the depths 8 and 16 at
// one and two blocks (docs/benchmarks.md).
#define MM_BK 16

#define MM_ENTRY(name, TA, TB, CHECKED)                                                          \
    extern "C" __global__ void __launch_bounds__(MM_THREADS, 2)                                  \
    name(const float* A, const float* B, float* C, int M, int N, int K) {                        \
        matmul_strict<MM_BK, TA, TB, CHECKED>(A, B, C, M, N, K);                                 \
    }

MM_ENTRY(matmul_nn, false, false, false)
MM_ENTRY(matmul_nt, false, true, false)
MM_ENTRY(matmul_tn, true, false, false)
MM_ENTRY(matmul_tt, true, true, false)
MM_ENTRY(matmul_nn_edge, false, false, true)
MM_ENTRY(matmul_nt_edge, false, true, true)
MM_ENTRY(matmul_tn_edge, true, false, true)
MM_ENTRY(matmul_tt_edge, true, true, true)
