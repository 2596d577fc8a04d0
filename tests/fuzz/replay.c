/* Replays a fuzz target's regression corpus without libFuzzer: every file
 * named on the command line (or found in a directory named there) goes once
 * through the target's LLVMFuzzerTestOneInput. Built with the ordinary
 * compiler and flags, so it runs in every build (gcc, Release, the
 * sanitizer builds); a finding that comes back crashes or trips the
 * target's own checks. Exit 0 when every input ran, 1 when an input could
 * not be read or none was found (a replay of nothing proves nothing). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: could not read\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy, as libFuzzer passes it, so reads past the end
     * are caught by ASan builds. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 1;
}

static int
replay(const char *path)
{
    struct stat st;
    if (stat(path, &st)) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    int count = 0;
    struct dirent *e;
    while (count >= 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        int r = replay(sub);
        count = r < 0 ? -1 : count + r;
    }
    closedir(d);
    return count;
}

int
main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int r = replay(argv[i]);
        if (r < 0)
            return 1;
        total += r;
    }
    printf("%s: %d input(s) replayed\n", argv[0], total);
    return total > 0 ? 0 : 1;
}
