package daemon

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// MessageKind tells what a Message carries.
type MessageKind int

// Kinds of messages the daemon sends while it works.
const (
	LogLine       MessageKind = iota // STDERR_NEXT: a log line (Text)
	StartActivity                    // an activity starts (ID, Level, Activity, Text, Fields, Parent)
	StopActivity                     // an activity ends (ID)
	Result                           // an activity reports (ID, Result, Fields)
)

// Verbosity is Nix's log level.
type Verbosity uint64

// Nix's verbosity levels.
const (
	VerbError Verbosity = iota
	VerbWarn
	VerbNotice
	VerbInfo
	VerbTalkative
	VerbChatty
	VerbDebug
	VerbVomit
)

// ActivityType is the type of a started activity.
type ActivityType uint64

// Activity types (Nix logging.hh); unknown values are passed on as-is.
const (
	ActUnknown       ActivityType = 0
	ActCopyPath      ActivityType = 100
	ActFileTransfer  ActivityType = 101
	ActRealise       ActivityType = 102
	ActCopyPaths     ActivityType = 103
	ActBuilds        ActivityType = 104
	ActBuild         ActivityType = 105 // fields: drvPath, machine, curRound, nrRounds
	ActOptimiseStore ActivityType = 106
	ActVerifyPaths   ActivityType = 107
	ActSubstitute    ActivityType = 108 // fields: store path, substituter URI
	ActQueryPathInfo ActivityType = 109
	ActPostBuildHook ActivityType = 110
	ActBuildWaiting  ActivityType = 111
)

// ResultType is the type of an activity result.
type ResultType uint64

// Result types (Nix logging.hh).
const (
	ResFileLinked       ResultType = 100
	ResBuildLogLine     ResultType = 101 // field: the line
	ResUntrustedPath    ResultType = 102
	ResCorruptedPath    ResultType = 103
	ResSetPhase         ResultType = 104
	ResProgress         ResultType = 105 // done, expected, running, failed
	ResSetExpected      ResultType = 106 // activity type, n
	ResPostBuildLogLine ResultType = 107
)

// Field is one field of an activity or result: an integer or a string.
type Field struct {
	Int      uint64
	String   string
	IsString bool
}

// Message is one message the daemon sent while working on an operation.
// Text is sent as the daemon wrote it (it may hold colour escapes; see
// StripANSI).
type Message struct {
	Kind     MessageKind
	ID       uint64 // activity id (StartActivity, StopActivity, Result)
	Parent   uint64 // parent activity id (StartActivity)
	Level    Verbosity
	Activity ActivityType // StartActivity
	Result   ResultType   // Result
	Text     string       // LogLine: the line without its newline; StartActivity: description
	Fields   []Field
}

// StringField returns field i as a string, or "" when absent or an integer.
func (m Message) StringField(i int) string {
	if i < len(m.Fields) && m.Fields[i].IsString {
		return m.Fields[i].String
	}
	return ""
}

// IntField returns field i as an integer, or 0 when absent or a string.
func (m Message) IntField(i int) uint64 {
	if i < len(m.Fields) && !m.Fields[i].IsString {
		return m.Fields[i].Int
	}
	return 0
}

// Error is an error the daemon reported for an operation (STDERR_ERROR).
// The connection normally stays usable; see docs/protocol.md.
type Error struct {
	Op         string   // the operation, e.g. "AddToStore"
	Message    string   // the daemon's message, colour escapes removed
	Traces     []string // error traces, if any
	ExitStatus int      // only from daemons older than protocol 1.26
}

func (e *Error) Error() string {
	return fmt.Sprintf("nix-daemon %s: %s", e.Op, e.Message)
}

// NotTrusted reports whether the daemon refused because the client is not
// trusted ("you are not privileged to ...").
func (e *Error) NotTrusted() bool {
	return strings.Contains(e.Message, "not privileged") || strings.Contains(e.Message, "not trusted")
}

// ProtocolError is a failure of the connection itself: it could not be
// opened, the handshake failed, or the stream broke. The connection cannot
// be used afterwards.
type ProtocolError struct {
	Store string // the store URI or socket
	Op    string
	Err   error
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("nix-daemon %s (%s): %v", e.Op, e.Store, e.Err)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

var ansiRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)`)
})

// StripANSI removes terminal colour and control escapes from s.
func StripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	return ansiRE().ReplaceAllString(s, "")
}

// cleanMessage strips colours and the "error: " prefix Nix puts on
// messages, and trims trailing white space.
func cleanMessage(s string) string {
	s = strings.TrimSpace(StripANSI(s))
	return strings.TrimPrefix(s, "error: ")
}

// Settings are the client settings sent with SetOptions. They apply to the
// whole connection. Overrides from an untrusted client are mostly ignored
// by the daemon (docs/protocol.md), except an empty substituter list.
type Settings struct {
	KeepFailed     bool
	KeepGoing      bool
	TryFallback    bool
	Verbosity      Verbosity
	MaxBuildJobs   int // 0: the daemon builds nothing itself (only remote builders), as nix-build -j 0
	MaxSilentTime  time.Duration
	VerboseBuild   bool
	BuildCores     int // 0: all cores
	UseSubstitutes bool
	// Overrides are further settings by name, e.g. "substituters": "".
	Overrides map[string]string
}

// DefaultSettings returns the settings a plain Nix client sends: one job,
// substitutes on, verbosity info.
func DefaultSettings() Settings {
	return Settings{Verbosity: VerbInfo, MaxBuildJobs: 1, UseSubstitutes: true, VerboseBuild: true}
}

// BuildMode selects how builds run.
type BuildMode uint64

// Build modes.
const (
	BuildNormal BuildMode = 0
	BuildRepair BuildMode = 1 // trusted clients only
	BuildCheck  BuildMode = 2
)

// BuildStatus is the status of one build result.
type BuildStatus uint64

// Build statuses (Nix build-result.hh).
const (
	Built                  BuildStatus = 0
	Substituted            BuildStatus = 1
	AlreadyValid           BuildStatus = 2
	PermanentFailure       BuildStatus = 3
	InputRejected          BuildStatus = 4
	OutputRejected         BuildStatus = 5
	TransientFailure       BuildStatus = 6
	CachedFailure          BuildStatus = 7
	TimedOut               BuildStatus = 8
	MiscFailure            BuildStatus = 9
	DependencyFailed       BuildStatus = 10
	LogLimitExceeded       BuildStatus = 11
	NotDeterministic       BuildStatus = 12
	ResolvesToAlreadyValid BuildStatus = 13
	NoSubstituters         BuildStatus = 14
)

var statusNames = [...]string{
	"Built", "Substituted", "AlreadyValid", "PermanentFailure", "InputRejected",
	"OutputRejected", "TransientFailure", "CachedFailure", "TimedOut", "MiscFailure",
	"DependencyFailed", "LogLimitExceeded", "NotDeterministic", "ResolvesToAlreadyValid",
	"NoSubstituters",
}

func (s BuildStatus) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("BuildStatus(%d)", uint64(s))
}

// Success reports whether the status means the outputs are valid.
func (s BuildStatus) Success() bool {
	return s == Built || s == Substituted || s == AlreadyValid || s == ResolvesToAlreadyValid
}

// BuildResult is the outcome of building one derivation or path.
type BuildResult struct {
	// Path is the DerivedPath the result is for ("/nix/store/…drv!*"), set
	// by BuildPathsWithResults.
	Path       string
	Status     BuildStatus
	ErrorMsg   string // colour escapes removed
	TimesBuilt int
	// IsNonDeterministic, StartTime and StopTime need protocol 1.29.
	IsNonDeterministic bool
	StartTime          time.Time
	StopTime           time.Time
	// BuiltOutputs maps output names to full store paths (protocol 1.28).
	BuiltOutputs map[string]string
}

// PathInfo is what the daemon knows about a valid store path.
type PathInfo struct {
	Path             string
	Deriver          string // "" when unknown
	NarHash          string // as the daemon sends it (lowercase hex)
	References       []string
	RegistrationTime time.Time
	NarSize          uint64
	Ultimate         bool
	Sigs             []string
	CA               string // "" when not content-addressed
}

// Missing is the answer of QueryMissing.
type Missing struct {
	WillBuild      []string // .drv paths
	WillSubstitute []string // store paths
	Unknown        []string
	DownloadSize   uint64
	NarSize        uint64
}

// DerivationOutput is one output of a BasicDerivation.
type DerivationOutput struct {
	Name     string
	Path     string // "" for floating content-addressed outputs
	HashAlgo string // "" for input-addressed outputs
	Hash     string
}

// BasicDerivation is a derivation whose input derivations have been
// replaced by their output paths in InputSrcs: what BuildDerivation takes.
type BasicDerivation struct {
	Outputs   []DerivationOutput // sent sorted by name
	InputSrcs []string
	Platform  string
	Builder   string
	Args      []string
	Env       map[string]string // sent sorted by key
}
