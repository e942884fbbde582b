package natsconn

import "strings"

// Mask stands for a secret in a printed URL.
const Mask = "xxxxx"

// Redact masks the password or token of each comma-separated URL in urls:
// nats://worker:s3cret@host:4222 becomes nats://worker:xxxxx@host:4222 and
// nats://t0ken@host becomes nats://xxxxx@host. Every URL that is printed,
// logged or published goes through it.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		user, pass, ok := userInfo(u)
		if !ok {
			continue
		}
		at := strings.LastIndexByte(u, '@')
		start := strings.Index(u, "://") + len("://")
		if start < len("://") {
			start = 0
		}
		shown := Mask
		if pass != "" {
			shown = user + ":" + Mask
		}
		parts[i] = u[:start] + shown + u[at:]
	}
	return strings.Join(parts, ",")
}

// userInfo splits the userinfo of one URL (what comes before its last @,
// after any scheme); ok is false when it has none. The last @ is taken so
// that a password holding an @ is masked whole.
func userInfo(u string) (user, pass string, ok bool) {
	u = strings.TrimSpace(u)
	at := strings.LastIndexByte(u, '@')
	if at < 0 {
		return "", "", false
	}
	info := u[:at]
	if i := strings.Index(info, "://"); i >= 0 {
		info = info[i+len("://"):]
	}
	user, pass, _ = strings.Cut(info, ":")
	return user, pass, true
}
