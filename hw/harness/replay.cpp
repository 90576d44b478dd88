// Direct Verilator harness for long replays and the `rtl` scheduler backend (hw/verilate.py).
//
// The Verilated top is hw/verilate.py's wrapper `replay_top`: it registers the Core's inputs on the
// rising edge that also clocks the Core, so one posedge eval() per cycle both advances the Core and
// applies that cycle's inputs, and the outputs sampled right after it are the Core's outputs for the
// cycle. Driving the Core's ports directly needs an eval() for the new inputs and another for the edge,
// and this Verilator re-runs all input-driven combinational logic in both (about half the run time).
//
// Input record, per cycle: 8 little-endian u64 (the 7 input ports of hw/ports.py INPUTS, then rst).
// Output record, per cycle: 7 u64, the OUTPUTS ports normalised like hw/ports.py unpack(): a ready
// counts only when its valid input is up, disp__payload and rdata only when their valid is up.
// (Verilator escapes the double underscore of the port names as ___05F.)
//
// Usage: replay IN OUT REPEAT [EXPECT]
//          Replays IN REPEAT times, each pass from a reset; writes the first pass's outputs to OUT.
//          With EXPECT (output records of the golden model) every cycle of every pass is compared
//          with it and the first difference ends the run: "mismatch pass P cycle T got ... want ...",
//          exit 3. Prints "cycles N seconds S cpu C" for the timed loop (stepping and checking).
//        replay - -
//          Streaming: one record in, one record out, flushed (the model in the loop).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "Vreplay.h"
#include "verilated.h"

static const int NIN = 8, NOUT = 7;

// One cycle: apply `in` at the rising edge, sample the normalised outputs, lower the clock.
static inline void step(Vreplay* t, const uint64_t* in, uint64_t* out) {
    t->enq___05Fvalid = in[0];
    t->enq___05Fpayload = in[1];
    t->disp___05Fready = in[2];
    t->send___05Fvalid = in[3];
    t->send___05Fpayload = in[4];
    t->recv___05Fvalid = in[5];
    t->recv___05Fpayload = in[6];
    t->rst = in[7];
    t->clk = 1;
    t->eval();
    const bool disp = t->disp___05Fvalid, rdata = t->rdata_valid;
    out[0] = in[0] && t->enq___05Fready;
    out[1] = disp;
    out[2] = disp ? t->disp___05Fpayload : 0;
    out[3] = in[3] && t->send___05Fready;
    out[4] = in[5] && t->recv___05Fready;
    out[5] = rdata;
    out[6] = rdata ? t->rdata : 0;
    t->clk = 0;
    t->eval();
}

// Idle inputs with rst up for one cycle: the Core is in its reset state for the next record.
static void reset(Vreplay* t) {
    static const uint64_t rst[NIN] = {0, 0, 0, 0, 0, 0, 0, 1};
    uint64_t out[NOUT];
    step(t, rst, out);
}

static std::vector<uint64_t> load(const char* path, int width) {
    std::vector<uint64_t> buf;
    FILE* f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    uint64_t rec[NIN];
    while (fread(rec, sizeof(uint64_t) * width, 1, f) == 1) buf.insert(buf.end(), rec, rec + width);
    fclose(f);
    return buf;
}

static double cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void print_rec(const char* tag, const uint64_t* r) {
    fprintf(stderr, " %s", tag);
    for (int k = 0; k < NOUT; k++) fprintf(stderr, " %llu", (unsigned long long)r[k]);
}

int main(int argc, char** argv) {
    bool stream = argc == 3 && !strcmp(argv[1], "-") && !strcmp(argv[2], "-");
    if (!stream && (argc < 4 || argc > 5)) {
        fprintf(stderr, "usage: %s IN OUT REPEAT [EXPECT] | %s - -\n", argv[0], argv[0]);
        return 2;
    }
    VerilatedContext ctx;
    Vreplay top{&ctx};
    top.clk = 0;
    top.eval();
    reset(&top);
    uint64_t in[NIN], out[NOUT];
    if (stream) {
        while (fread(in, sizeof in, 1, stdin) == 1) {
            step(&top, in, out);
            if (fwrite(out, sizeof out, 1, stdout) != 1) return 1;
            fflush(stdout);
        }
        return 0;
    }
    std::vector<uint64_t> stim = load(argv[1], NIN);
    size_t n = stim.size() / NIN;
    long repeat = atol(argv[3]);
    std::vector<uint64_t> want;
    if (argc == 5) {
        want = load(argv[4], NOUT);
        if (want.size() != n * NOUT) {
            fprintf(stderr, "%s: %zu expected records for %zu cycles\n", argv[4], want.size() / NOUT, n);
            return 2;
        }
    }
    const bool check = !want.empty();
    std::vector<uint64_t> res(n * NOUT);
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu_seconds();
    for (long r = 0; r < repeat; r++) {
        if (r) reset(&top);
        for (size_t i = 0; i < n; i++) {
            step(&top, &stim[i * NIN], out);
            if (r == 0) memcpy(&res[i * NOUT], out, sizeof out);
            if (check && memcmp(out, &want[i * NOUT], sizeof out)) {
                fprintf(stderr, "mismatch pass %ld cycle %zu", r, i);
                print_rec("got", out);
                print_rec("want", &want[i * NOUT]);
                fprintf(stderr, "\n");
                return 3;
            }
        }
    }
    double c = cpu_seconds() - c0;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    FILE* o = fopen(argv[2], "wb");
    if (!o) { perror(argv[2]); return 2; }
    fwrite(res.data(), sizeof(uint64_t), res.size(), o);
    fclose(o);
    fprintf(stderr, "cycles %zu seconds %.6f cpu %.6f\n", n * (size_t)repeat, s, c);
    return 0;
}
