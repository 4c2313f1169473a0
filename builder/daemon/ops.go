package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Operation codes (docs/protocol.md).
const (
	opIsValidPath              = 1
	opAddToStore               = 7
	opBuildPaths               = 9
	opAddTempRoot              = 11
	opSetOptions               = 19
	opQueryPathInfo            = 26
	opQueryValidPaths          = 31
	opBuildDerivation          = 36
	opNarFromPath              = 38
	opQueryMissing             = 40
	opQueryDerivationOutputMap = 41
	opBuildPathsWithResults    = 46
)

// SetOptions sends client settings for the rest of the connection.
func (c *Conn) SetOptions(ctx context.Context, s Settings) error {
	return c.run(ctx, "SetOptions", func() error { return c.setOptions(s) })
}

func (c *Conn) setOptions(s Settings) error {
	c.writeU64(opSetOptions)
	c.writeBool(s.KeepFailed)
	c.writeBool(s.KeepGoing)
	c.writeBool(s.TryFallback)
	c.writeU64(uint64(s.Verbosity))
	c.writeU64(uint64(max(s.MaxBuildJobs, 0)))
	c.writeU64(uint64(s.MaxSilentTime / time.Second))
	c.writeU64(1) // useBuildHook (obsolete)
	if s.VerboseBuild {
		c.writeU64(uint64(VerbError))
	} else {
		c.writeU64(uint64(VerbVomit))
	}
	c.writeU64(0) // logType
	c.writeU64(0) // printBuildTrace
	c.writeU64(uint64(max(s.BuildCores, 0)))
	c.writeBool(s.UseSubstitutes)
	keys := slices.Sorted(maps.Keys(s.Overrides))
	c.writeU64(uint64(len(keys)))
	for _, k := range keys {
		c.writeString(k)
		c.writeString(s.Overrides[k])
	}
	if err := c.flush(); err != nil {
		return err
	}
	return c.processStderr("SetOptions", nil)
}

// simple runs an operation whose request is written by req and whose
// reply is read by reply after STDERR_LAST.
func (c *Conn) simple(ctx context.Context, op string, code uint64, req func(), reply func() error) error {
	return c.run(ctx, op, func() error {
		c.writeU64(code)
		req()
		if err := c.flush(); err != nil {
			return err
		}
		if err := c.processStderr(op, nil); err != nil {
			return err
		}
		if reply == nil {
			return nil
		}
		return reply()
	})
}

// IsValidPath reports whether path is valid in the store.
func (c *Conn) IsValidPath(ctx context.Context, path string) (bool, error) {
	var ok bool
	err := c.simple(ctx, "IsValidPath", opIsValidPath, func() { c.writeString(path) }, func() (err error) {
		ok, err = c.readBool()
		return err
	})
	return ok, err
}

// QueryValidPaths returns the subset of paths that is valid; with
// substitute, the daemon may substitute missing ones first.
func (c *Conn) QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error) {
	var valid []string
	err := c.simple(ctx, "QueryValidPaths", opQueryValidPaths, func() {
		c.writeStrings(paths)
		if c.minor() >= 27 {
			c.writeBool(substitute)
		}
	}, func() (err error) {
		valid, err = c.readStrings()
		return err
	})
	return valid, err
}

// ErrNotValid is returned by QueryPathInfo for a path that is not valid.
var ErrNotValid = errors.New("path is not valid")

// QueryPathInfo returns what the daemon knows about path, or an error
// wrapping ErrNotValid.
func (c *Conn) QueryPathInfo(ctx context.Context, path string) (*PathInfo, error) {
	var info *PathInfo
	err := c.simple(ctx, "QueryPathInfo", opQueryPathInfo, func() { c.writeString(path) }, func() error {
		valid, err := c.readBool()
		if err != nil {
			return err
		}
		if !valid {
			return nil
		}
		info = &PathInfo{Path: path}
		return c.readPathInfo(info)
	})
	if err != nil {
		return nil, err
	}
	if info == nil {
		return nil, fmt.Errorf("query %s: %w", path, ErrNotValid)
	}
	return info, nil
}

func (c *Conn) readPathInfo(info *PathInfo) error {
	var err error
	if info.Deriver, err = c.readString(); err != nil {
		return err
	}
	if info.NarHash, err = c.readString(); err != nil {
		return err
	}
	if info.References, err = c.readStrings(); err != nil {
		return err
	}
	t, err := c.readU64()
	if err != nil {
		return err
	}
	info.RegistrationTime = time.Unix(int64(t), 0)
	if info.NarSize, err = c.readU64(); err != nil {
		return err
	}
	if c.minor() >= 16 {
		if info.Ultimate, err = c.readBool(); err != nil {
			return err
		}
		if info.Sigs, err = c.readStrings(); err != nil {
			return err
		}
		if info.CA, err = c.readString(); err != nil {
			return err
		}
	}
	return nil
}

// QueryMissing reports what building targets (DerivedPaths such as
// "/nix/store/…drv!*") would build, substitute, or cannot know.
func (c *Conn) QueryMissing(ctx context.Context, targets []string) (*Missing, error) {
	m := &Missing{}
	err := c.simple(ctx, "QueryMissing", opQueryMissing, func() { c.writeStrings(targets) }, func() (err error) {
		if m.WillBuild, err = c.readStrings(); err != nil {
			return err
		}
		if m.WillSubstitute, err = c.readStrings(); err != nil {
			return err
		}
		if m.Unknown, err = c.readStrings(); err != nil {
			return err
		}
		if m.DownloadSize, err = c.readU64(); err != nil {
			return err
		}
		m.NarSize, err = c.readU64()
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// QueryDerivationOutputMap returns the output paths of a derivation in
// the store by output name ("" for outputs not known yet).
func (c *Conn) QueryDerivationOutputMap(ctx context.Context, drvPath string) (map[string]string, error) {
	out := map[string]string{}
	err := c.simple(ctx, "QueryDerivationOutputMap", opQueryDerivationOutputMap, func() { c.writeString(drvPath) }, func() error {
		n, err := c.readCount()
		if err != nil {
			return err
		}
		for range n {
			k, err := c.readString()
			if err != nil {
				return err
			}
			v, err := c.readString()
			if err != nil {
				return err
			}
			out[k] = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddTempRoot keeps path alive against garbage collection for as long as
// the connection stays open.
func (c *Conn) AddTempRoot(ctx context.Context, path string) error {
	return c.simple(ctx, "AddTempRoot", opAddTempRoot, func() { c.writeString(path) }, func() error {
		_, err := c.readU64()
		return err
	})
}

// Text is a text object to add to the store (a .drv file).
type Text struct {
	Name       string   // store path name, e.g. "hello-2.12.drv"
	Content    []byte   // exact file content
	References []string // full store paths: inputDrvs ∪ inputSrcs for a .drv
}

// AddText adds a text object with AddToStore method "text:sha256" and
// returns the store path the daemon registered. The daemon checks the
// output paths of a .drv it registers, for every client.
func (c *Conn) AddText(ctx context.Context, t Text) (string, error) {
	var path string
	err := c.run(ctx, "AddToStore", func() error {
		c.writeAddText(t)
		// Stream the framed content while draining the daemon's messages,
		// as Nix does: the daemon enters its stderr phase before reading.
		werr := make(chan error, 1)
		go func() {
			c.writeFramed(t.Content)
			werr <- c.flush()
		}()
		err := c.processStderr("AddToStore", nil)
		var pe *ProtocolError
		if errors.As(err, &pe) {
			c.rwc.Close() // unblock the writer
		}
		if werr := <-werr; err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		info := PathInfo{}
		if info.Path, err = c.readString(); err != nil {
			return err
		}
		if err := c.readPathInfo(&info); err != nil {
			return err
		}
		path = info.Path
		return nil
	})
	if err != nil {
		return "", err
	}
	return path, nil
}

func (c *Conn) writeAddText(t Text) {
	c.writeU64(opAddToStore)
	c.writeString(t.Name)
	c.writeString("text:sha256")
	c.writeStrings(t.References)
	c.writeU64(0) // repair
}

// writeFramed writes data as a framed stream (unpadded frames, then an
// empty frame).
func (c *Conn) writeFramed(data []byte) {
	const frame = 32 << 10
	for len(data) > 0 {
		n := min(len(data), frame)
		c.writeU64(uint64(n))
		c.w.Write(data[:n])
		data = data[n:]
	}
	c.writeU64(0)
}

// AddTexts adds texts in order, pipelined: requests are streamed while
// replies are read, so a batch costs no round trip per object. The daemon
// handles them one after another, so each may reference earlier ones.
// It returns the registered paths; errs[i] is the daemon's error for
// texts[i] (later objects that reference a failed one fail too). A
// transport failure is returned as err.
func (c *Conn) AddTexts(ctx context.Context, texts []Text) (paths []string, errs []error, err error) {
	paths = make([]string, len(texts))
	errs, err = c.pipeline(ctx, "AddToStore", len(texts), func(i int) {
		c.writeAddText(texts[i])
		c.writeFramed(texts[i].Content)
	}, func(i int) error {
		info := PathInfo{}
		p, err := c.readString()
		if err != nil {
			return err
		}
		paths[i] = p
		return c.readPathInfo(&info)
	})
	return paths, errs, err
}

// AddTempRoots is AddTempRoot for many paths, pipelined.
func (c *Conn) AddTempRoots(ctx context.Context, paths []string) error {
	errs, err := c.pipeline(ctx, "AddTempRoot", len(paths), func(i int) {
		c.writeU64(opAddTempRoot)
		c.writeString(paths[i])
	}, func(int) error {
		_, err := c.readU64()
		return err
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// pipeline sends n requests (written by req) from one goroutine while
// this one reads the n replies (stderr loop, then reply). A daemon error
// for request i lands in errs[i]; a transport failure ends the batch.
func (c *Conn) pipeline(ctx context.Context, op string, n int, req func(i int), reply func(i int) error) (errs []error, err error) {
	errs = make([]error, n)
	err = c.run(ctx, op, func() error {
		werr := make(chan error, 1)
		go func() {
			for i := range n {
				req(i)
			}
			werr <- c.flush()
		}()
		for i := range n {
			err := c.processStderr(op, nil)
			var de *Error
			if errors.As(err, &de) {
				errs[i] = err
				continue
			}
			if err == nil {
				err = reply(i)
			}
			if err != nil {
				c.rwc.Close() // unblock the writer
				<-werr
				return err
			}
		}
		return <-werr
	})
	return errs, err
}

// BuildPathsWithResults builds targets (DerivedPaths such as
// "/nix/store/…drv!*") and returns one result per target, in target
// order. Build failures are statuses in the results, not errors. Against
// daemons older than 1.34 it falls back to BuildPaths: results then carry
// only the status Built, and a failure is returned as an *Error.
func (c *Conn) BuildPathsWithResults(ctx context.Context, targets []string, mode BuildMode) ([]BuildResult, error) {
	if c.minor() < 34 {
		if err := c.BuildPaths(ctx, targets, mode); err != nil {
			return nil, err
		}
		res := make([]BuildResult, len(targets))
		for i, t := range targets {
			res[i] = BuildResult{Path: t, Status: Built}
		}
		return res, nil
	}
	byPath := map[string]BuildResult{}
	err := c.simple(ctx, "BuildPathsWithResults", opBuildPathsWithResults, func() {
		c.writeStrings(targets)
		c.writeU64(uint64(mode))
	}, func() error {
		n, err := c.readCount()
		if err != nil {
			return err
		}
		for range n {
			p, err := c.readString()
			if err != nil {
				return err
			}
			r, err := c.readBuildResult()
			if err != nil {
				return err
			}
			r.Path = p
			byPath[p] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The order of the reply differs between daemon versions: match by
	// the DerivedPath string. "drv!*" may come back as "drv!out,…".
	res := make([]BuildResult, len(targets))
	for i, t := range targets {
		r, ok := byPath[t]
		if !ok {
			base, _, _ := strings.Cut(t, "!")
			for p, rr := range byPath {
				if pb, _, _ := strings.Cut(p, "!"); pb == base {
					r, ok = rr, true
					break
				}
			}
		}
		if !ok {
			return nil, &ProtocolError{Store: c.desc, Op: "BuildPathsWithResults", Err: fmt.Errorf("no result for %s", t)}
		}
		r.Path = t
		res[i] = r
	}
	return res, nil
}

// BuildPaths builds targets; a failure is returned as an *Error.
func (c *Conn) BuildPaths(ctx context.Context, targets []string, mode BuildMode) error {
	return c.simple(ctx, "BuildPaths", opBuildPaths, func() {
		c.writeStrings(targets)
		c.writeU64(uint64(mode))
	}, func() error {
		_, err := c.readU64()
		return err
	})
}

// BuildDerivation builds drv (named drvPath) without reading a .drv from
// the store. Input-addressed derivations need a trusted client: the
// daemon's refusal is an *Error whose NotTrusted() is true.
func (c *Conn) BuildDerivation(ctx context.Context, drvPath string, drv *BasicDerivation, mode BuildMode) (*BuildResult, error) {
	var res BuildResult
	err := c.simple(ctx, "BuildDerivation", opBuildDerivation, func() {
		c.writeString(drvPath)
		outs := slices.Clone(drv.Outputs)
		slices.SortFunc(outs, func(a, b DerivationOutput) int { return strings.Compare(a.Name, b.Name) })
		c.writeU64(uint64(len(outs)))
		for _, o := range outs {
			c.writeString(o.Name)
			c.writeString(o.Path)
			c.writeString(o.HashAlgo)
			c.writeString(o.Hash)
		}
		c.writeStrings(drv.InputSrcs)
		c.writeString(drv.Platform)
		c.writeString(drv.Builder)
		c.writeStrings(drv.Args)
		keys := slices.Sorted(maps.Keys(drv.Env))
		c.writeU64(uint64(len(keys)))
		for _, k := range keys {
			c.writeString(k)
			c.writeString(drv.Env[k])
		}
		c.writeU64(uint64(mode))
	}, func() (err error) {
		res, err = c.readBuildResult()
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Path = drvPath
	return &res, nil
}

func (c *Conn) readBuildResult() (BuildResult, error) {
	var r BuildResult
	st, err := c.readU64()
	if err != nil {
		return r, err
	}
	r.Status = BuildStatus(st)
	msg, err := c.readString()
	if err != nil {
		return r, err
	}
	r.ErrorMsg = strings.TrimSpace(StripANSI(msg))
	if c.minor() >= 29 {
		var tb, nd, start, stop uint64
		if tb, err = c.readU64(); err != nil {
			return r, err
		}
		if nd, err = c.readU64(); err != nil {
			return r, err
		}
		if start, err = c.readU64(); err != nil {
			return r, err
		}
		if stop, err = c.readU64(); err != nil {
			return r, err
		}
		r.TimesBuilt, r.IsNonDeterministic = int(tb), nd != 0
		if start != 0 {
			r.StartTime = time.Unix(int64(start), 0)
		}
		if stop != 0 {
			r.StopTime = time.Unix(int64(stop), 0)
		}
	}
	if c.minor() >= 37 {
		for range 2 { // cpuUser, cpuSystem: optional microseconds
			tag, err := c.readU64()
			if err != nil {
				return r, err
			}
			if tag != 0 {
				if _, err := c.readU64(); err != nil {
					return r, err
				}
			}
		}
	}
	if c.minor() >= 28 {
		n, err := c.readCount()
		if err != nil {
			return r, err
		}
		r.BuiltOutputs = make(map[string]string, min(n, 64))
		for range n {
			key, err := c.readString()
			if err != nil {
				return r, err
			}
			val, err := c.readString()
			if err != nil {
				return r, err
			}
			name := key[strings.LastIndexByte(key, '!')+1:]
			var real struct {
				OutPath string `json:"outPath"`
			}
			if err := json.Unmarshal([]byte(val), &real); err != nil {
				return r, &ProtocolError{Store: c.desc, Op: "build result", Err: fmt.Errorf("output %s: %v", key, err)}
			}
			p := real.OutPath
			if !strings.HasPrefix(p, "/") {
				p = c.storeDir + "/" + p
			}
			r.BuiltOutputs[name] = p
		}
	}
	return r, nil
}

// NarFromPath writes the NAR serialisation of a valid path to w. It asks
// QueryPathInfo for the NAR size first, since the daemon sends the NAR
// with neither length nor framing.
func (c *Conn) NarFromPath(ctx context.Context, path string, w io.Writer) error {
	info, err := c.QueryPathInfo(ctx, path)
	if err != nil {
		return err
	}
	return c.simple(ctx, "NarFromPath", opNarFromPath, func() { c.writeString(path) }, func() error {
		n, err := io.CopyN(w, c.r, int64(info.NarSize))
		if err != nil {
			if n < int64(info.NarSize) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return c.eofError("NarFromPath", err)
			}
			// The writer failed: the rest of the NAR is still on the wire.
			c.broken = fmt.Errorf("NAR of %s left unread: %w", path, err)
			return fmt.Errorf("copy NAR of %s: %w", path, err)
		}
		return nil
	})
}

// formatVersion renders a protocol version as "1.34".
func formatVersion(v uint64) string {
	return strconv.FormatUint(v>>8, 10) + "." + strconv.FormatUint(v&0xff, 10)
}
