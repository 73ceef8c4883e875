package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// tokenPrefix marks meshlens API keys so secret scanners can spot them.
const tokenPrefix = "mlk_"

// NewToken makes a random API key and its hash for the config.
func NewToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("random token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken is the form a token is stored in: "sha256:<hex>".
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

type storedToken struct {
	name string
	role Role
	hash [32]byte
}

// tokenSet matches presented tokens against stored hashes. Every entry is
// compared in constant time, so timing tells nothing about which matched.
type tokenSet []storedToken

func (s tokenSet) lookup(token string) (storedToken, bool) {
	h := sha256.Sum256([]byte(token))
	var found storedToken
	hit := 0
	for _, t := range s {
		if subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 {
			found, hit = t, 1
		}
	}
	return found, hit == 1
}

// loadTokens gathers the configured tokens and those of the token files.
// Errors name the file and line, never a line's content (it may be a token
// pasted by mistake).
func loadTokens(c Config) (tokenSet, error) {
	var set tokenSet
	for _, t := range c.Tokens {
		h, err := parseHash(t.SHA256)
		if err != nil {
			return nil, fmt.Errorf("auth token %q: %w", t.Name, err)
		}
		set = append(set, storedToken{t.Name, t.Role, h})
	}
	for _, path := range c.TokenFiles {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("auth token file: %w", err)
		}
		ts, err := parseTokenFile(data)
		if err != nil {
			return nil, fmt.Errorf("auth token file %s: %w", path, err)
		}
		set = append(set, ts...)
	}
	seen := map[[32]byte]string{}
	for _, t := range set {
		if other, dup := seen[t.hash]; dup {
			return nil, fmt.Errorf("auth tokens %q and %q are the same token", other, t.name)
		}
		seen[t.hash] = t.name
	}
	return set, nil
}

// parseTokenFile reads lines "name role sha256:<hex>"; blank lines and # comments are skipped.
func parseTokenFile(data []byte) (tokenSet, error) {
	var set tokenSet
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want \"name role sha256:<hex>\"", line)
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: unknown role: want viewer, operator, approver or admin", line)
		}
		h, err := parseHash(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		set = append(set, storedToken{f[0], role, h})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return set, nil
}
