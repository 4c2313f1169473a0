// Package resolver turns a poison registry into a pinned poison.lock
// (docs/formats.md): it
// fetches the registry (internal/gitnet, on go-git's protocol packages),
// pins one commit,
// optionally verifies its signature, loads the entries with package
// registry and computes the serial map.
//
// Sources are remote URLs (file://, git://, http(s)://, ssh://, or scp-like
// user@host:path), fetched into a Cache with one bare clone per URL, or
// local directories: a git work tree or bare repository, read in place at a
// ref, or a plain directory read as it is.
//
// Credentials: a URL may carry them (https://oauth2:TOKEN@host/r); the
// fetch uses them, but everything recorded or shown — poison.lock,
// poison.nix, the cache's names and files, every error and description —
// holds RedactURL's form: no userinfo for http(s), no password otherwise,
// and *** for query values and fragments. The cache is keyed by that form,
// so a lock finds its last fetch and no file name holds a secret.
//
// Network: every fetch has a connect timeout and a stall timeout (no byte
// for that long ends it) on every transport, set per call through
// Options.Network (nothing global). An offline resolve takes no lock: it
// reads the state an online fetch publishes atomically once complete, so
// it never waits behind a fetch of the same URL stuck on a dead server.
//
// Update is what `poison resolve` runs. It fails closed: a fetch failure,
// an invalid entry (unless Options.SkipInvalid), an unverifiable commit or
// a lock that would lower a serial of the previous one (unless
// AllowSerialDecrease) leaves the previous lock untouched and returns the
// reason. Concurrent updates of one lock, and concurrent online resolves
// of one URL, are serialised with file locks, so they always leave one
// consistent lock. The lock and poison.nix are written both or neither.
//
// Speed: a lock depends only on the commit, so the cache keeps the locks it
// computed. A resolve with nothing new costs one round trip to list the
// remote refs; after new commits that only add entry files (the append-only
// rule), only the added files are read and their serials added to the
// cached lock of the previous commit, which equals a full load because a
// serial is a sum over entry files. Anything else is a full load, reading
// every blob in pack order.
//
// CheckFreshness tells the commands that read a lock which commit it pins
// and whether the last successful fetch is older than the allowed age;
// the time of that fetch lives in the cache, not in the lock, so the lock
// bytes stay a function of the commit.
//
// Signatures: --trusted-keys accepts OpenPGP keys (verified with
// ProtonMail/go-crypto, as go-git's Commit.Verify does) and SSH keys in
// git's allowed_signers format, honoured as git verify-commit honours it
// (principals, namespaces, validity, cert-authority; the SSHSIG format of
// ssh-keygen -Y sign, namespace "git"); X.509 signatures are refused. The
// lock records the key that verified its commit (CheckVerified).
package resolver
