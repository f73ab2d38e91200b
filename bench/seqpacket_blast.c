/* seqpacket_blast: load generator for taskwatchd (or bench/seqpacket_sink) over AF_UNIX SOCK_SEQPACKET.
 *
 * Forks K sender processes (separate pids: taskwatchd treats a second connection from the same process
 * as a takeover). Each connects, sends one hello and its declarations (precomputed bytes, valid frames per
 * docs/protocol.md), then one values frame per 4096 series so every series has a value, and reports
 * "ready". Then each blasts `values` frames of E updates, cycling over its S series, for D seconds with
 * MSG_DONTWAIT (EAGAIN is counted, then the sender waits for POLLOUT), and finally holds the connection
 * for H seconds (or until SIGTERM) so the series stay visible, and says goodbye.
 *
 * Prints "ready" on stdout when every sender has declared, then a JSON summary after the blast phase.
 *
 *   seqpacket_blast --path P [--senders K] [--series S] [--per-frame E] [--duration D] [--hold H]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct buf {
    uint8_t *data;
    size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->data = realloc(b->data, b->cap);
        if (!b->data) abort();
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void u8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void u16(struct buf *b, uint16_t v) { uint8_t x[2] = {v, v >> 8}; put(b, x, 2); }
static void u32(struct buf *b, uint32_t v) { for (int i = 0; i < 4; i++) u8(b, (uint8_t)(v >> (8 * i))); }
static void u64(struct buf *b, uint64_t v) { for (int i = 0; i < 8; i++) u8(b, (uint8_t)(v >> (8 * i))); }
static void f64(struct buf *b, double d) { uint64_t v; memcpy(&v, &d, 8); u64(b, v); }
static void str(struct buf *b, const char *s) { size_t n = strlen(s); u16(b, (uint16_t)n); put(b, s, n); }
static void header(struct buf *b, uint8_t kind) { u32(b, 0x48435754u); u8(b, 1); u8(b, kind); u16(b, 0); }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static volatile sig_atomic_t stop_flag;
/* In the parent, the senders to pass a stop on to (kill is async-signal-safe); NULL in a sender. */
static pid_t *volatile g_pids;
static volatile int g_senders;
static void on_term(int sig) {
    (void)sig;
    stop_flag = 1;
    pid_t *pids = g_pids;
    if (pids)
        for (int k = 0; k < g_senders; k++)
            if (pids[k] > 0) kill(pids[k], SIGTERM);
}

struct result {
    uint64_t frames, updates, eagain, bytes;
    double seconds;
};

/* Sends one frame; waits (and counts) on EAGAIN. Returns 0 on success, -1 when the peer is gone. */
static int send_frame(int fd, const uint8_t *p, size_t n, uint64_t *eagain, int wait) {
    for (;;) {
        ssize_t r = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r == (ssize_t)n) return 0;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            (*eagain)++;
            if (!wait) return 1;
            struct pollfd pfd = {fd, POLLOUT, 0};
            poll(&pfd, 1, 100);
            if (stop_flag) return 1;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        return -1;
    }
}

static int sender(const char *path, int index, int series, int per_frame, double duration, double hold,
                  int ready_fd, int result_fd) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    int tries = 0;
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (++tries > 200) { perror("connect"); return 1; }
        usleep(10000);
    }
    uint64_t ignored = 0;
    struct buf b = {0};
    char name[64];

    header(&b, 1);
    u32(&b, (uint32_t)getpid());
    u64(&b, 10000000);
    snprintf(name, sizeof name, "blast%d", index);
    str(&b, name);
    str(&b, "seqpacket_blast");
    u16(&b, 0);
    if (send_frame(fd, b.data, b.len, &ignored, 1)) return 1;

    /* Declarations: gauge bench_value{series="sNNNNN"}, ids 1..S, 1000 per frame. */
    for (int first = 0; first < series; first += 1000) {
        int n = series - first < 1000 ? series - first : 1000;
        b.len = 0;
        header(&b, 2);
        u16(&b, (uint16_t)n);
        for (int i = first; i < first + n; i++) {
            char value[16];
            snprintf(value, sizeof value, "s%05d", i);
            u32(&b, (uint32_t)i + 1);
            u8(&b, 2);
            str(&b, "bench_value");
            str(&b, "A benchmark gauge.");
            u16(&b, 1);
            str(&b, "series");
            str(&b, value);
            u16(&b, 0);
        }
        if (send_frame(fd, b.data, b.len, &ignored, 1)) return 1;
    }
    /* Initial values: series i = i * 0.5 (half integers, half fractions), 4096 per frame. */
    for (int first = 0; first < series; first += 4096) {
        int n = series - first < 4096 ? series - first : 4096;
        b.len = 0;
        header(&b, 3);
        u16(&b, (uint16_t)n);
        for (int i = first; i < first + n; i++) { u32(&b, (uint32_t)i + 1); f64(&b, i * 0.5); }
        if (send_frame(fd, b.data, b.len, &ignored, 1)) return 1;
    }
    char r = 'r';
    if (write(ready_fd, &r, 1) != 1) return 1;
    close(ready_fd);

    /* Blast: the frame bytes are prepared once; only the ids and values change. */
    struct result res = {0};
    if (duration > 0) {
        b.len = 0;
        header(&b, 3);
        u16(&b, (uint16_t)per_frame);
        for (int i = 0; i < per_frame; i++) { u32(&b, 0); f64(&b, 0); }
        uint32_t next = 0;
        double value = 1;
        double start = now_s(), end = start + duration;
        uint64_t check = 0;
        while (!stop_flag) {
            for (int i = 0; i < per_frame; i++) {
                uint32_t id = next + 1;
                next = next + 1 == (uint32_t)series ? 0 : next + 1;
                memcpy(b.data + 10 + 12 * i, &id, 4);
                memcpy(b.data + 14 + 12 * i, &value, 8);
            }
            value += 1;
            if (send_frame(fd, b.data, b.len, &res.eagain, 1) < 0) break;
            res.frames++;
            res.bytes += b.len;
            if ((++check & 255) == 0 && now_s() >= end) break;
        }
        res.seconds = now_s() - start;
        res.updates = res.frames * (uint64_t)per_frame;
    }
    if (write(result_fd, &res, sizeof res) != sizeof res) return 1;
    close(result_fd);

    double hold_end = now_s() + hold;
    while (!stop_flag && now_s() < hold_end) usleep(20000);
    b.len = 0;
    header(&b, 6);
    send_frame(fd, b.data, b.len, &ignored, 0);
    close(fd);
    return 0;
}

/* Passes a stop on to the senders, once. */
static void forward_stop(pid_t *pids, int senders, int *forwarded) {
    if (!stop_flag || *forwarded) return;
    for (int k = 0; k < senders; k++) kill(pids[k], SIGTERM);
    *forwarded = 1;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int senders = 1, series = 64, per_frame = 4;
    double duration = 5, hold = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--path")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--senders")) senders = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--series")) series = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--per-frame")) per_frame = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration")) duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--hold")) hold = atof(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!path || senders < 1 || series < 1 || series > 65535 || per_frame < 1 || per_frame > 5460) {
        fprintf(stderr, "usage: seqpacket_blast --path P [--senders K] [--series S<=65535] [--per-frame E] "
                        "[--duration D] [--hold H]\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ready[2], results[2];
    if (pipe(ready) || pipe(results)) { perror("pipe"); return 1; }
    pid_t *pids = calloc(senders, sizeof *pids);
    for (int k = 0; k < senders; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            g_pids = NULL;
            close(ready[0]);
            close(results[0]);
            _exit(sender(path, k, series, per_frame, duration, hold, ready[1], results[1]));
        }
        pids[k] = pid;
    }
    g_senders = senders;
    g_pids = pids;
    if (stop_flag) on_term(SIGTERM);
    close(ready[1]);
    close(results[1]);
    int got = 0, forwarded = 0;
    char c;
    for (;;) {
        ssize_t r = got < senders ? read(ready[0], &c, 1) : 0;
        if (r == 1) { got++; continue; }
        if (r < 0 && errno == EINTR) { forward_stop(pids, senders, &forwarded); continue; }
        break;
    }
    printf("ready %d\n", got);
    fflush(stdout);

    struct result sum = {0};
    double max_seconds = 0;
    struct result one;
    int reported = 0;
    for (;;) {
        ssize_t r = reported < senders ? read(results[0], &one, sizeof one) : 0;
        if (r < 0 && errno == EINTR) { forward_stop(pids, senders, &forwarded); continue; }
        if (r != sizeof one) break;
        sum.frames += one.frames;
        sum.updates += one.updates;
        sum.eagain += one.eagain;
        sum.bytes += one.bytes;
        if (one.seconds > max_seconds) max_seconds = one.seconds;
        reported++;
    }
    if (duration > 0 && max_seconds > 0) {
        printf("{\"senders\":%d,\"series_per_sender\":%d,\"updates_per_frame\":%d,\"seconds\":%.3f,"
               "\"frames\":%llu,\"updates\":%llu,\"bytes\":%llu,\"eagain\":%llu,"
               "\"frames_per_s\":%.0f,\"updates_per_s\":%.0f,\"frame_bytes\":%d}\n",
               senders, series, per_frame, max_seconds, (unsigned long long)sum.frames,
               (unsigned long long)sum.updates, (unsigned long long)sum.bytes, (unsigned long long)sum.eagain,
               sum.frames / max_seconds, sum.updates / max_seconds, 10 + 12 * per_frame);
        fflush(stdout);
    }
    /* Forward a stop to the children, then reap them. */
    for (;;) {
        int status;
        forward_stop(pids, senders, &forwarded);
        pid_t done = waitpid(-1, &status, 0);
        if (done < 0 && errno == EINTR) continue;
        if (done < 0) break;
    }
    return 0;
}
