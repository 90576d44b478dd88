// Direct Verilator harness for long replays and the `rtl` scheduler backend (hw/verilate.py).
// Input: per cycle 8 little-endian u64 (the 7 input ports of hw/ports.py INPUTS, then rst).
// Output: per cycle 7 u64 (the OUTPUTS ports sampled after the inputs settle, before the edge).
// (Verilator escapes the double underscore of the port names as ___05F.)
// Usage: replay IN OUT [REPEAT]  -- files; times only the eval loop, prints "cycles N seconds S".
//        replay - -               -- streaming: one record in, one record out, flushed (in the loop).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "Vcore.h"
#include "verilated.h"

static const int NIN = 8, NOUT = 7;

static inline void drive(Vcore* t, const uint64_t* in) {
    t->enq___05Fvalid = in[0];
    t->enq___05Fpayload = in[1];
    t->disp___05Fready = in[2];
    t->send___05Fvalid = in[3];
    t->send___05Fpayload = in[4];
    t->recv___05Fvalid = in[5];
    t->recv___05Fpayload = in[6];
    t->rst = in[7];
    t->eval();
}

static inline void sample(Vcore* t, uint64_t* out) {
    out[0] = t->enq___05Fready;
    out[1] = t->disp___05Fvalid;
    out[2] = t->disp___05Fpayload;
    out[3] = t->send___05Fready;
    out[4] = t->recv___05Fready;
    out[5] = t->rdata_valid;
    out[6] = t->rdata;
}

static inline void edge(Vcore* t) {
    t->clk = 1;
    t->eval();
    t->clk = 0;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s IN OUT [REPEAT] | %s - -\n", argv[0], argv[0]);
        return 2;
    }
    VerilatedContext ctx;
    Vcore top{&ctx};
    top.clk = 0;
    top.rst = 1;
    top.eval();
    edge(&top);
    top.rst = 0;
    top.eval();
    uint64_t in[NIN], out[NOUT];
    if (!strcmp(argv[1], "-")) {
        while (fread(in, sizeof in, 1, stdin) == 1) {
            drive(&top, in);
            sample(&top, out);
            edge(&top);
            if (fwrite(out, sizeof out, 1, stdout) != 1) return 1;
            fflush(stdout);
        }
        return 0;
    }
    FILE* f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    std::vector<uint64_t> buf;
    while (fread(in, sizeof in, 1, f) == 1) buf.insert(buf.end(), in, in + NIN);
    fclose(f);
    size_t n = buf.size() / NIN;
    long repeat = argc > 3 ? atol(argv[3]) : 1;
    std::vector<uint64_t> res(n * NOUT);
    auto t0 = std::chrono::steady_clock::now();
    for (long r = 0; r < repeat; r++) {
        for (size_t i = 0; i < n; i++) {
            drive(&top, &buf[i * NIN]);
            if (r == 0) sample(&top, &res[i * NOUT]);
            edge(&top);
        }
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    FILE* o = fopen(argv[2], "wb");
    if (!o) { perror(argv[2]); return 2; }
    fwrite(res.data(), sizeof(uint64_t), res.size(), o);
    fclose(o);
    fprintf(stderr, "cycles %zu seconds %.6f\n", n * (size_t)repeat, s);
    return 0;
}
