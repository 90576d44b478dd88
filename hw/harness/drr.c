/* C twin of the DRR + token-bucket rule of runtime/scheduler.py (sim/SPEC.md §3), for the software
 * baseline of `clove-gym hw report`: the fastest software decision maker measured on this machine.
 * Same cycle convention as sim/backends.py; tests prove it makes the same decisions as the Python.
 *
 * drr replay N DEPTH QUANTUM RATE BURST IN OUT : IN = per tick int32 (agent or -1), int32 cost,
 *     int32 ready; OUT = per tick int32 grant (-1 none), int32 accepted.
 * drr bench N DECISIONS                        : all agents backlogged, prints "decisions D seconds S".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXA 64
#define MAXD 1024
#define ONE 256

typedef struct {
    int n, depth, quantum, rate, cap;
    int ptr, in_visit;
    int head[MAXA], len[MAXA];
    int cost[MAXA][MAXD];
    long deficit[MAXA];
    int tokens[MAXA];
} drr_t;

static int ready(const drr_t *s, int a) {
    return s->len[a] && (s->rate == 0 || s->tokens[a] >= s->cost[a][s->head[a]] * ONE);
}

/* one cycle: returns the grant (-1 none); `ready_in`: the consumer takes a dispatch */
static int tick(drr_t *s, int ready_in) {
    int g = -1, n = s->n;
    if (ready_in) {
        int p = s->ptr, cont = 0, any = 0;
        for (int i = 0; i < n; i++) any |= s->len[i];
        if (s->in_visit && ready(s, p) && s->cost[p][s->head[p]] <= s->deficit[p]) cont = 1, g = p;
        if (!cont && any) {
            int start = s->in_visit ? (p + 1) % n : p;
            for (int k = 0; k < n; k++) if (ready(s, (start + k) % n)) { g = (start + k) % n; break; }
        }
        if (g >= 0) {
            int c = s->cost[g][s->head[g]];
            if (!cont) s->deficit[g] += s->quantum;
            s->deficit[g] -= c;
            s->head[g] = (s->head[g] + 1) % s->depth;
            s->len[g]--;
            if (s->rate) s->tokens[g] -= c * ONE;
            s->ptr = g, s->in_visit = 1;
            if (!s->len[g]) s->deficit[g] = 0, s->ptr = (g + 1) % n, s->in_visit = 0;
        } else if (any && s->in_visit) {
            s->ptr = (p + 1) % n, s->in_visit = 0;
        }
    }
    if (s->rate)
        for (int i = 0; i < n; i++) s->tokens[i] = s->tokens[i] + s->rate > s->cap ? s->cap : s->tokens[i] + s->rate;
    return g;
}

static int push(drr_t *s, int a, int c) {
    if (s->len[a] >= s->depth) return 0;
    s->cost[a][(s->head[a] + s->len[a]) % s->depth] = c;
    s->len[a]++;
    return 1;
}

static void init(drr_t *s, int n, int depth, int quantum, int rate, int burst) {
    memset(s, 0, sizeof *s);
    s->n = n, s->depth = depth, s->quantum = quantum, s->rate = rate, s->cap = burst * ONE;
    for (int i = 0; i < n; i++) s->tokens[i] = s->cap;
}

int main(int argc, char **argv) {
    static drr_t s;
    if (argc == 4 && !strcmp(argv[1], "bench")) {
        int n = atoi(argv[2]);
        long d = atol(argv[3]), sum = 0;
        if (n < 1 || n > MAXA) return 2;
        init(&s, n, 64, 1, 0, 1);
        for (int a = 0; a < n; a++) for (int k = 0; k < 32; k++) push(&s, a, 1);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < d; i++) { int g = tick(&s, 1); sum += g; push(&s, g, 1); }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("decisions %ld seconds %.6f checksum %ld\n", d, sec, sum);
        return 0;
    }
    if (argc != 9 || strcmp(argv[1], "replay")) {
        fprintf(stderr, "usage: drr replay N DEPTH QUANTUM RATE BURST IN OUT | drr bench N DECISIONS\n");
        return 2;
    }
    int n = atoi(argv[2]), depth = atoi(argv[3]);
    if (n < 1 || n > MAXA || depth < 1 || depth > MAXD) { fprintf(stderr, "drr: N or DEPTH out of range\n"); return 2; }
    init(&s, n, depth, atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    FILE *in = fopen(argv[7], "rb"), *out = fopen(argv[8], "wb");
    if (!in || !out) { perror("drr"); return 2; }
    int32_t rec[3], res[2];
    while (fread(rec, sizeof rec, 1, in) == 1) {
        int full = rec[0] >= 0 && s.len[rec[0]] >= s.depth;
        res[0] = tick(&s, rec[2]);
        res[1] = rec[0] >= 0 && !full && push(&s, rec[0], rec[1]);
        fwrite(res, sizeof res, 1, out);
    }
    fclose(in);
    fclose(out);
    return 0;
}
