package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// The environment variables that keep Redis passwords out of the config
// file. Set, they take precedence over the file's password_file and URL.
const (
	EnvRedisPassword         = "BREAKERBOX_REDIS_PASSWORD"
	EnvRedisSentinelPassword = "BREAKERBOX_REDIS_SENTINEL_PASSWORD"
)

// Redis is a shared state on Redis: one server (URL), a Sentinel setup or a
// Redis Cluster, with TLS and an ACL user. state: redis://… is the short
// form of state: {url: redis://…}.
type Redis struct {
	URL      string    // one server: redis://[user[:password]@]host:port[/db], rediss:// for TLS
	Sentinel *Sentinel // a primary found through its sentinels
	Cluster  *Cluster  // a Redis Cluster
	// Username is the ACL user, for Sentinel and Cluster (a URL names its own).
	Username string
	// PasswordFile holds the user's password (one line).
	PasswordFile string
	// DB is the database, for Sentinel (a URL names its own; a Cluster has
	// only 0).
	DB  int
	TLS *RedisTLS // TLS options; with a URL, its scheme must be rediss://
	// Timeout bounds each Redis round trip a request may wait for (a
	// HALF_OPEN probe's lease) and, ×10, the fleet's background work; a
	// slower answer puts the replica in degraded mode, deciding locally.
	// 0 means redisstate's default (100 ms).
	Timeout Duration

	// password is the password in use: from EnvRedisPassword, PasswordFile
	// or the URL, in that order. Never printed.
	password string
	tls      *tls.Config // built from TLS at load; nil without TLS
	long     bool        // written as a mapping, not state: redis://…
}

// Sentinel names the primary and the sentinels that watch it.
type Sentinel struct {
	Master string   // the name the sentinels monitor the primary under
	Addrs  []string // the sentinels, host:port
	// PasswordFile holds the sentinels' own password, if they require one
	// (EnvRedisSentinelPassword takes precedence).
	PasswordFile string
	password     string
}

// Cluster lists seed nodes of a Redis Cluster; the client learns the others.
type Cluster struct {
	Addrs []string // host:port
}

// RedisTLS are the TLS options of a Redis state. An empty tls: {} means TLS
// with the system's CAs.
type RedisTLS struct {
	CAFile     string // PEM CA certificates to trust instead of the system's
	CertFile   string // a client certificate, with KeyFile
	KeyFile    string
	ServerName string // the name the server's certificate must carry, if not the host dialed
}

// decodeState decodes state: a string (memory, or a Redis URL), or a mapping.
func (d *decoder) decodeState(n *yaml.Node, field string, c *Config) {
	if n = d.resolve(n, field); n.Kind != yaml.MappingNode {
		d.str(n, field, &c.State)
		return
	}
	r := &Redis{long: true}
	c.Redis, c.State = r, "redis"
	str := func(out *string) func(*yaml.Node, string) { return func(n *yaml.Node, f string) { d.str(n, f, out) } }
	addrs := func(out *[]string) func(*yaml.Node, string) {
		return func(n *yaml.Node, f string) {
			d.seq(n, f, func(n *yaml.Node, f string) {
				var a string
				d.str(n, f, &a)
				*out = append(*out, a)
			})
		}
	}
	d.mapping(n, field, map[string]func(*yaml.Node, string){
		"url":           str(&r.URL),
		"username":      str(&r.Username),
		"password_file": str(&r.PasswordFile),
		"password": func(n *yaml.Node, f string) {
			d.errorf(n.Line, f, "keep the password out of the config: put it in a file named by password_file, or in the environment variable %s", EnvRedisPassword)
		},
		"db":      func(n *yaml.Node, f string) { d.int(n, f, &r.DB, 0, 1000) },
		"timeout": func(n *yaml.Node, f string) { d.dur(n, f, &r.Timeout) },
		"tls": func(n *yaml.Node, f string) {
			r.TLS = &RedisTLS{}
			d.mapping(n, f, map[string]func(*yaml.Node, string){
				"ca_file": str(&r.TLS.CAFile), "cert_file": str(&r.TLS.CertFile),
				"key_file": str(&r.TLS.KeyFile), "server_name": str(&r.TLS.ServerName),
			})
		},
		"sentinel": func(n *yaml.Node, f string) {
			r.Sentinel = &Sentinel{}
			d.mapping(n, f, map[string]func(*yaml.Node, string){
				"master": str(&r.Sentinel.Master), "addrs": addrs(&r.Sentinel.Addrs), "password_file": str(&r.Sentinel.PasswordFile),
			})
		},
		"cluster": func(n *yaml.Node, f string) {
			r.Cluster = &Cluster{}
			d.mapping(n, f, map[string]func(*yaml.Node, string){"addrs": addrs(&r.Cluster.Addrs)})
		},
	})
}

// checkState validates state: and fills in c.Redis for a Redis URL.
func (d *decoder) checkState(c *Config) {
	switch {
	case c.Redis != nil:
		d.checkRedis(c.Redis)
	case c.State == "":
		c.State = "memory"
	case c.State == "memory":
	case strings.HasPrefix(c.State, "redis://"), strings.HasPrefix(c.State, "rediss://"):
		c.Redis = &Redis{URL: c.State}
		d.checkRedis(c.Redis)
	default:
		d.fieldf("state", "%q: want memory, or redis://host:port/db to share circuits across replicas (or a mapping: url, sentinel or cluster)", RedactURL(c.State))
	}
}

func (d *decoder) checkRedis(r *Redis) {
	set := 0
	for _, ok := range []bool{r.URL != "", r.Sentinel != nil, r.Cluster != nil} {
		if ok {
			set++
		}
	}
	switch {
	case set == 0:
		d.fieldf("state", "no Redis: set url (one server), sentinel (master and addrs of the sentinels) or cluster (addrs of seed nodes)")
		return
	case set > 1:
		d.fieldf("state", "set one of url, sentinel and cluster: they are three ways to reach Redis")
		return
	}
	var urlPassword string
	switch {
	case r.URL != "":
		if !strings.HasPrefix(r.URL, "redis://") && !strings.HasPrefix(r.URL, "rediss://") {
			d.fieldf(r.field("url"), "%q: want redis://[user@]host:port[/db], or rediss:// for TLS", RedactURL(r.URL))
			return
		}
		if err := checkRedisURL(r.URL); err != nil {
			d.fieldf(r.field("url"), "%q: %v; want redis://[user:password@]host:port[/db]", RedactURL(r.URL), err)
			return
		}
		u, _ := url.Parse(r.URL)
		urlPassword, _ = u.User.Password()
		if r.Username != "" {
			d.fieldf("state.username", "set with a URL, which names its own user (redis://user@host:port): keep one")
		}
		if r.DB != 0 {
			d.fieldf("state.db", "set with a URL, which names its own database (redis://host:port/%d): keep one", r.DB)
		}
		if r.TLS != nil && u.Scheme != "rediss" {
			d.fieldf("state.tls", "set with a redis:// URL, which is plaintext: write rediss:// for TLS")
		}
	case r.Sentinel != nil:
		if r.Sentinel.Master == "" {
			d.fieldf("state.sentinel.master", "empty: want the name the sentinels monitor the primary under (sentinel monitor <name> …)")
		}
		d.addrs("state.sentinel.addrs", r.Sentinel.Addrs, "the sentinels, e.g. [10.0.0.1:26379, 10.0.0.2:26379, 10.0.0.3:26379]")
		r.Sentinel.password = d.secret("state.sentinel.password_file", r.Sentinel.PasswordFile, EnvRedisSentinelPassword, "")
	case r.Cluster != nil:
		d.addrs("state.cluster.addrs", r.Cluster.Addrs, "seed nodes of the cluster, e.g. [10.0.0.1:6379, 10.0.0.2:6379, 10.0.0.3:6379]")
		if r.DB != 0 {
			d.fieldf("state.db", "%d: a Redis Cluster has only database 0; remove it", r.DB)
		}
	}
	if r.PasswordFile != "" && urlPassword != "" {
		d.fieldf("state.password_file", "set with a URL that holds a password: keep one (the file keeps it out of the config)")
	}
	r.password = d.secret("state.password_file", r.PasswordFile, EnvRedisPassword, urlPassword)
	if r.TLS != nil {
		r.tls = d.redisTLS(r.TLS)
	} else if strings.HasPrefix(r.URL, "rediss://") {
		r.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
}

// field is the name of a state key in errors: state for the short form.
func (r *Redis) field(key string) string {
	if !r.long {
		return "state"
	}
	return "state." + key
}

// addrs checks a list of host:port.
func (d *decoder) addrs(field string, addrs []string, want string) {
	if len(addrs) == 0 {
		d.fieldf(field, "empty: list %s", want)
	}
	seen := map[string]bool{}
	for i, a := range addrs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !d.hostPort(f, a) {
			continue
		}
		if _, port, _ := net.SplitHostPort(a); port == "0" || strings.TrimLeft(port, "0") == "" {
			// 0 means "any free port" to a listener; nothing can be dialled there.
			d.fieldf(f, "%q: port 0 is not an address to dial: want the server's port, e.g. 6379", a)
		} else if seen[a] {
			d.fieldf(f, "%q is listed twice", a)
		}
		seen[a] = true
	}
}

// secret returns a password: from the environment variable env if set,
// else from file (one line; a final newline is dropped), else def.
func (d *decoder) secret(field, file, env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	if file == "" {
		return def
	}
	data, err := os.ReadFile(file)
	if err != nil {
		d.fieldf(field, "%v: want a readable file holding the password", err)
		return ""
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	switch {
	case pw == "":
		d.fieldf(field, "%q is empty: want the password on one line", file)
	case strings.ContainsAny(pw, "\r\n"):
		d.fieldf(field, "%q holds more than one line: want the password alone on one line", file)
	}
	return pw
}

// redisTLS reads the TLS files of a Redis state.
func (d *decoder) redisTLS(t *RedisTLS) *tls.Config {
	c := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		c.RootCAs = d.caFile("state.tls.ca_file", t.CAFile)
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		d.fieldf("state.tls.key_file", "empty while cert_file is set: want the client certificate's private key (PEM)")
	case t.CertFile == "" && t.KeyFile != "":
		d.fieldf("state.tls.cert_file", "empty while key_file is set: want the client certificate (PEM)")
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			d.fieldf("state.tls.cert_file", "%v: want a PEM certificate, and in key_file its PEM private key", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// Options are go-redis's options for this state: a Sentinel-backed client
// for Sentinel, a cluster client for Cluster, else one server.
func (r *Redis) Options() *redis.UniversalOptions {
	o := &redis.UniversalOptions{Username: r.Username, Password: r.password, DB: r.DB, TLSConfig: r.tls}
	switch {
	case r.Sentinel != nil:
		o.MasterName, o.Addrs, o.SentinelPassword = r.Sentinel.Master, r.Sentinel.Addrs, r.Sentinel.password
	case r.Cluster != nil:
		o.Addrs, o.IsClusterMode = r.Cluster.Addrs, true
	default:
		// Validated: ParseURL fails on nothing checkRedisURL let through.
		ro, err := redis.ParseURL(r.URL)
		if err != nil {
			return o
		}
		// Without server_name, TLS checks the certificate against the host
		// dialed.
		o.Addrs, o.Username, o.DB = []string{ro.Addr}, ro.Username, ro.DB
	}
	return o
}

// String describes the state for logs, without passwords.
func (r *Redis) String() string {
	var s string
	switch {
	case r.Sentinel != nil:
		s = fmt.Sprintf("redis sentinel (master %s, sentinels %s)", r.Sentinel.Master, strings.Join(r.Sentinel.Addrs, ","))
	case r.Cluster != nil:
		s = fmt.Sprintf("redis cluster (seeds %s)", strings.Join(r.Cluster.Addrs, ","))
	default:
		return RedactURL(r.URL)
	}
	if r.Username != "" {
		s += ", user " + r.Username
	}
	if r.tls != nil {
		s += ", TLS"
	}
	return s
}

// Equal reports whether two states are configured alike: a reload that
// changes it needs a restart.
func (r *Redis) Equal(o *Redis) bool {
	if r == nil || o == nil {
		return r == o
	}
	sameTLS := (r.TLS == nil) == (o.TLS == nil) && (r.TLS == nil || *r.TLS == *o.TLS)
	sameSentinel := (r.Sentinel == nil) == (o.Sentinel == nil) && (r.Sentinel == nil ||
		r.Sentinel.Master == o.Sentinel.Master && slices.Equal(r.Sentinel.Addrs, o.Sentinel.Addrs) &&
			r.Sentinel.PasswordFile == o.Sentinel.PasswordFile && r.Sentinel.password == o.Sentinel.password)
	sameCluster := (r.Cluster == nil) == (o.Cluster == nil) && (r.Cluster == nil || slices.Equal(r.Cluster.Addrs, o.Cluster.Addrs))
	return r.URL == o.URL && r.Username == o.Username && r.PasswordFile == o.PasswordFile && r.password == o.password &&
		r.DB == o.DB && r.Timeout == o.Timeout && sameTLS && sameSentinel && sameCluster
}
