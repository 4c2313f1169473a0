package provenance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DrvReader reads what the hook needs of a .drv file: its output paths
// (input-addressed and fixed ones; floating outputs have none) and its
// platform.
type DrvReader func(path string) (outputs []string, system string, err error)

// HookOptions are the inputs of HookRecord. Zero fields take the defaults
// named on each.
type HookOptions struct {
	// Getenv reads the hook's environment (DRV_PATH, OUT_PATHS,
	// NIX_LOG_DIR). Required.
	Getenv func(string) string
	// Now is the clock. Required.
	Now func() time.Time
	// Host overrides the hostname, for boards that share one.
	Host string
	// Hostname returns the machine's name; os.Hostname when nil.
	Hostname func() (string, error)
	// MachineIDFile is read for Record.MachineID; /etc/machine-id when "".
	MachineIDFile string
	// ReadDrv reads the derivation: the outputs when OUT_PATHS is empty
	// (Nix 2.8 passes it empty), and the system. Required.
	ReadDrv DrvReader
	// LogDir is Nix's log directory; $NIX_LOG_DIR, else /nix/var/log/nix.
	LogDir string
	// NixVersion returns the version of the Nix running the hook; none is
	// recorded when nil.
	NixVersion func(ctx context.Context) string
}

// HookRecord builds the journal record of the build Nix just finished,
// from the post-build-hook's environment. Only a missing or malformed
// DRV_PATH is an error; anything else that cannot be learnt is left out
// of the record and reported in warnings.
func HookRecord(ctx context.Context, o HookOptions) (rec *Record, warnings []string, err error) {
	now := o.Now()
	drv := strings.TrimSpace(o.Getenv("DRV_PATH"))
	if drv == "" {
		return nil, nil, errors.New("DRV_PATH is not set: run this as Nix's post-build-hook")
	}
	if err := checkStorePath(drv); err != nil || !strings.HasSuffix(drv, ".drv") {
		return nil, nil, fmt.Errorf("DRV_PATH %q is not a .drv store path", truncate(drv))
	}
	rec = &Record{Drv: drv, End: now}
	rec.Outputs = strings.Fields(o.Getenv("OUT_PATHS"))
	root, realDrv, storeLog := chrootStore(o.Getenv("NIX_CONFIG"), drv)
	outs, system, derr := o.ReadDrv(realDrv)
	if derr != nil {
		warnings = append(warnings, fmt.Sprintf("read %s: %v", drv, derr))
	}
	rec.System = system
	if len(rec.Outputs) == 0 {
		rec.Outputs = outs
	}
	rec.Host = o.Host
	if rec.Host == "" {
		hostname := o.Hostname
		if hostname == nil {
			hostname = os.Hostname
		}
		h, err := hostname()
		if err != nil || h == "" {
			warnings = append(warnings, fmt.Sprintf("hostname: %v", err))
			h = "unknown"
		}
		rec.Host = h
	}
	mid := o.MachineIDFile
	if mid == "" {
		mid = "/etc/machine-id"
	}
	if id, err := readMachineID(mid); err == nil {
		rec.MachineID = id
	} else if !errors.Is(err, os.ErrNotExist) {
		warnings = append(warnings, err.Error())
	}
	logDir := o.LogDir
	if logDir == "" && root != "" {
		logDir = storeLog
	}
	if logDir == "" {
		logDir = o.Getenv("NIX_LOG_DIR")
	}
	if logDir == "" {
		logDir = "/nix/var/log/nix"
	}
	if t, ok := buildLogBirth(logDir, drv); ok && !t.After(now) {
		rec.Start, rec.StartSource = t, StartBuildLog
	}
	if o.NixVersion != nil {
		rec.Nix = o.NixVersion(ctx)
	}
	return rec, warnings, nil
}

// chrootStore reads the store setting Nix passes the hook in NIX_CONFIG.
// For a chroot store (local?root=DIR, or a plain directory, as Nix
// accepts it) the .drv and the build log are under DIR: it returns DIR,
// where the .drv really is, and the store's log directory (the real= and
// log= parameters override them, as in Nix). Otherwise root is "" and
// realDrv is drv.
func chrootStore(nixConfig, drv string) (root, realDrv, logDir string) {
	store := ""
	for _, line := range strings.Split(nixConfig, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "store" {
			store = strings.TrimSpace(v)
		}
	}
	var real string
	switch {
	case strings.HasPrefix(store, "/"):
		root = store
	case strings.HasPrefix(store, "local?") || strings.HasPrefix(store, "local://?"):
		_, q, _ := strings.Cut(store, "?")
		vals, err := url.ParseQuery(q)
		if err != nil {
			return "", drv, ""
		}
		root, real, logDir = vals.Get("root"), vals.Get("real"), vals.Get("log")
	}
	if root == "" || !filepath.IsAbs(root) {
		return "", drv, ""
	}
	realDrv = filepath.Join(root, drv)
	if real != "" && filepath.IsAbs(real) {
		realDrv = filepath.Join(real, filepath.Base(drv))
	}
	if logDir == "" || !filepath.IsAbs(logDir) {
		logDir = filepath.Join(root, "nix", "var", "log", "nix")
	}
	return root, realDrv, logDir
}

var machineIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{32}$`) })

// readMachineID reads a machine-id file (32 lowercase hex digits).
func readMachineID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	id := string(bytes.TrimSpace(b))
	if !machineIDRE().MatchString(id) {
		return "", fmt.Errorf("%s: not a machine id (32 hex digits)", path)
	}
	return id, nil
}

// buildLogBirth returns the birth time of the derivation's build log,
// which Nix creates as the build starts
// (LOGDIR/drvs/XX/REST[.bz2], XX the first two characters of the .drv's
// base name). It reports false when the log or its birth time is missing
// (keep-build-log = false, a file system without birth times).
func buildLogBirth(logDir, drv string) (time.Time, bool) {
	base := filepath.Base(drv)
	if len(base) < 3 {
		return time.Time{}, false
	}
	dir := filepath.Join(logDir, "drvs", base[:2])
	for _, name := range []string{base[2:] + ".bz2", base[2:]} {
		var st unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, filepath.Join(dir, name), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &st)
		if err != nil {
			continue
		}
		if st.Mask&unix.STATX_BTIME == 0 {
			return time.Time{}, false
		}
		return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec)), true
	}
	return time.Time{}, false
}

var nixVersionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^nix[a-z-]* \(Nix\) ([0-9][0-9A-Za-z.+_-]{0,63})$`) })

// ParentNixVersion returns the version of the Nix that ran this process
// (the executable of the parent process, asked with --version), caching
// it in cacheFile keyed by that executable's path, size and mtime: asking
// costs ~20 ms, reading the cache well under one. Only an executable
// whose name starts with "nix" is asked. It returns "" when the parent is
// not Nix (or is Nix started through the dynamic loader, as a relocated
// Nix is) or anything fails.
func ParentNixVersion(ctx context.Context, cacheFile string) string {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(os.Getppid()) + "/exe")
	if err != nil || strings.HasSuffix(exe, " (deleted)") || !strings.HasPrefix(filepath.Base(exe), "nix") {
		return "" // not Nix (a shell running the hook by hand): never run it
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return ""
	}
	key := fmt.Sprintf("%s\t%d\t%d", exe, fi.Size(), fi.ModTime().UnixNano())
	if cacheFile != "" {
		if f, err := os.Open(cacheFile); err == nil {
			b, _ := io.ReadAll(io.LimitReader(f, 4096))
			f.Close()
			k, v, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
			if ok && k == key && nixVersionRE().MatchString("nix (Nix) "+v) {
				return v
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "--version")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var out bytes.Buffer
	cmd.Stdout = &limitWriter{w: &out, n: 4096}
	if err := cmd.Run(); err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	m := nixVersionRE().FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	if cacheFile != "" {
		tmp := fmt.Sprintf("%s.%d.tmp", cacheFile, os.Getpid())
		if os.WriteFile(tmp, []byte(key+"\n"+m[1]+"\n"), 0o644) == nil {
			if os.Rename(tmp, cacheFile) != nil {
				os.Remove(tmp)
			}
		}
	}
	return m[1]
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	k := len(p)
	if len(p) > l.n {
		p = p[:l.n]
	}
	l.n -= len(p)
	if len(p) > 0 {
		l.w.Write(p)
	}
	return k, nil
}

// RunHook is the whole post-build-hook: it builds the record of the build
// Nix just finished (HookRecord) and appends it to journal, creating the
// journal's directory if needed. Warnings are things left out of the
// record; an error means nothing was journalled. Either way the caller
// exits 0: Nix halts its build loop when the hook fails.
func RunHook(ctx context.Context, journal string, o HookOptions) (warnings []string, err error) {
	if !filepath.IsAbs(journal) {
		return nil, fmt.Errorf("journal %q: want an absolute path (Nix runs the hook from its own working directory)", journal)
	}
	if o.NixVersion == nil {
		o.NixVersion = func(ctx context.Context) string { return ParentNixVersion(ctx, journal+".nix-version") }
	}
	rec, warnings, err := HookRecord(ctx, o)
	if err != nil {
		return warnings, err
	}
	if len(rec.Outputs) == 0 {
		warnings = append(warnings, rec.Drv+": no output paths known (OUT_PATHS empty and none in the .drv)")
	}
	if err := os.MkdirAll(filepath.Dir(journal), 0o755); err != nil {
		return warnings, fmt.Errorf("journal: %w", err)
	}
	return warnings, Append(journal, rec)
}
