/*
 * slow_fuse: a read-only passthrough FUSE filesystem whose every read waits a fixed time
 * before it reads the backing file, as a slow disk would. benches/cold_download.py mounts it
 * to see whether a download of a file that is not in the page cache stalls a server's worker.
 *
 *     slow_fuse BACKING_DIR MOUNTPOINT --delay-us N [fuse options, e.g. -f -o ro,max_read=131072]
 *
 * Files are opened without keep_cache (each open drops the kernel's cached pages of the file,
 * so every download starts cold) and without direct_io (reads go through the page cache and
 * its readahead, as on a disk). Compile:
 *
 *     cc -O2 -o target/slow_fuse benches/peers/slow_fuse.c $(pkg-config fuse3 --cflags --libs)
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static char backing[PATH_MAX];
static long delay_us;
static unsigned max_read; /* the max_read=N mount option, which init must repeat */

/* BACKING_DIR joined with `path` (which starts with '/'). */
static int full(char *out, const char *path)
{
    return snprintf(out, PATH_MAX, "%s%s", backing, path) < PATH_MAX ? 0 : -ENAMETOOLONG;
}

static void *sf_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    conn->max_read = max_read;
    cfg->kernel_cache = 0;
    cfg->direct_io = 0;
    return NULL;
}

static int sf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    if (fi)
        return fstat(fi->fh, st) ? -errno : 0;
    int err = full(p, path);
    return err ? err : lstat(p, st) ? -errno : 0;
}

static int sf_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    char p[PATH_MAX];
    (void)offset, (void)fi, (void)flags;
    int err = full(p, path);
    if (err)
        return err;
    DIR *dir = opendir(p);
    if (!dir)
        return -errno;
    for (struct dirent *e; (e = readdir(dir));) {
        struct stat st = {.st_ino = e->d_ino, .st_mode = DTTOIF(e->d_type)};
        if (fill(buf, e->d_name, &st, 0, 0))
            break;
    }
    closedir(dir);
    return 0;
}

static int sf_open(const char *path, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    if ((fi->flags & O_ACCMODE) != O_RDONLY)
        return -EROFS;
    int err = full(p, path);
    if (err)
        return err;
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return -errno;
    fi->fh = fd;
    fi->keep_cache = 0;
    fi->direct_io = 0;
    return 0;
}

static int sf_read(const char *path, char *buf, size_t size, off_t offset,
                   struct fuse_file_info *fi)
{
    (void)path;
    struct timespec wait = {delay_us / 1000000, delay_us % 1000000 * 1000};
    while (nanosleep(&wait, &wait) && errno == EINTR)
        ;
    ssize_t n = pread(fi->fh, buf, size, offset);
    return n < 0 ? -errno : (int)n;
}

static int sf_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close(fi->fh);
    return 0;
}

static int sf_statfs(const char *path, struct statvfs *st)
{
    char p[PATH_MAX];
    int err = full(p, path);
    return err ? err : statvfs(p, st) ? -errno : 0;
}

static const struct fuse_operations ops = {
    .init = sf_init,
    .getattr = sf_getattr,
    .readdir = sf_readdir,
    .open = sf_open,
    .read = sf_read,
    .release = sf_release,
    .statfs = sf_statfs,
};

int main(int argc, char *argv[])
{
    /* BACKING_DIR and --delay-us N are ours; fuse_main gets the rest (MOUNTPOINT, options). */
    char **rest = calloc(argc + 1, sizeof *rest);
    int n = 0;
    rest[n++] = argv[0];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--delay-us") && i + 1 < argc)
            delay_us = atol(argv[++i]);
        else
            rest[n++] = argv[i];
        const char *m = strstr(argv[i], "max_read=");
        if (m)
            max_read = strtoul(m + strlen("max_read="), NULL, 10);
    }
    if (argc < 3 || !realpath(argv[1], backing) || delay_us < 0) {
        fprintf(stderr, "usage: %s BACKING_DIR MOUNTPOINT --delay-us N [fuse options]\n",
                argv[0]);
        return 2;
    }
    return fuse_main(n, rest, &ops, NULL);
}
