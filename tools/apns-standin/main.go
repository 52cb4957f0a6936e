// apns-standin: a fast local APNs for benchmarks (bench/b4_push.py), so that the stand-in is
// not what limits a push's speed. It keeps the checks of tests/fakes/apns.py that a sender
// can get wrong: HTTP/2 over TLS, POST /3/device/<hex token>, an ES256 provider token (kid,
// iss, signed by the team's key, iat within the hour), apns-topic, apns-push-type matching
// the payload, apns-priority, apns-expiration, apns-collapse-id of at most 64 bytes, the
// 4 KB payload limit. It counts deliveries per token.
//
//	apns-standin -cert server.pem -key server.key -team-key AuthKey.p8 \
//	    -key-id ABC123DEFG -team-id DEF123GHIJ -topic dev.offgrid.example
//
// It prints {"origin": "https://127.0.0.1:<port>"} on one line; every line read on stdin is
// answered with {"total", "duplicates", "rejected"}.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type standin struct {
	teamKey *ecdsa.PublicKey
	keyID   string
	teamID  string
	topic   string

	mu        sync.Mutex
	delivered map[string]int
	total     int
	rejected  int
	verified  map[string]int64 // provider token -> its iat, once its signature checked out
}

func (s *standin) reject(w http.ResponseWriter, status int, reason string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"reason":%q}`, reason)
}

func (s *standin) providerTokenProblem(bearer string) string {
	scheme, token, found := strings.Cut(bearer, " ")
	if !found || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "MissingProviderToken"
	}
	s.mu.Lock()
	iat, known := s.verified[token]
	s.mu.Unlock()
	if !known {
		var ok bool
		iat, ok = s.verify(token)
		if !ok {
			return "InvalidProviderToken"
		}
		s.mu.Lock()
		s.verified[token] = iat
		s.mu.Unlock()
	}
	now := time.Now().Unix()
	if iat > now+60 {
		return "InvalidProviderToken"
	}
	if iat < now-3600 {
		return "ExpiredProviderToken"
	}
	return ""
}

func (s *standin) verify(token string) (int64, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0, false
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Iat *int64 `json:"iat"`
	}
	if decodeJSON(parts[0], &header) != nil || decodeJSON(parts[1], &claims) != nil {
		return 0, false
	}
	if header.Alg != "ES256" || header.Kid != s.keyID || claims.Iss != s.teamID || claims.Iat == nil {
		return 0, false
	}
	signature, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(signature) != 64 {
		return 0, false
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, sig := new(big.Int).SetBytes(signature[:32]), new(big.Int).SetBytes(signature[32:])
	if !ecdsa.Verify(s.teamKey, digest[:], r, sig) {
		return 0, false
	}
	return *claims.Iat, true
}

func decodeJSON(segment string, into any) error {
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

func isHex(token string) bool {
	if token == "" {
		return false
	}
	for _, c := range token {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

func isDigits(value string) bool {
	if value == "" {
		return false
	}
	for _, c := range value {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *standin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.reject(w, 405, "MethodNotAllowed")
		return
	}
	token, found := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !found {
		s.reject(w, 404, "BadPath")
		return
	}
	if problem := s.providerTokenProblem(r.Header.Get("authorization")); problem != "" {
		s.reject(w, 403, problem)
		return
	}
	h := r.Header
	switch {
	case h.Get("apns-topic") == "":
		s.reject(w, 400, "MissingTopic")
		return
	case h.Get("apns-topic") != s.topic:
		s.reject(w, 400, "DeviceTokenNotForTopic")
		return
	case h.Get("apns-push-type") != "alert" && h.Get("apns-push-type") != "background":
		s.reject(w, 400, "InvalidPushType")
		return
	case h.Get("apns-priority") != "5" && h.Get("apns-priority") != "10":
		s.reject(w, 400, "BadPriority")
		return
	case !isDigits(h.Get("apns-expiration")):
		s.reject(w, 400, "BadExpirationDate")
		return
	case len(h.Get("apns-collapse-id")) > 64:
		s.reject(w, 400, "BadCollapseId")
		return
	case !isHex(token):
		s.reject(w, 400, "BadDeviceToken")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil {
		s.reject(w, 400, "BadPayload")
		return
	}
	if len(body) > 4096 {
		s.reject(w, 413, "PayloadTooLarge")
		return
	}
	var payload struct {
		Aps *struct {
			ContentAvailable *int            `json:"content-available"`
			Alert            json.RawMessage `json:"alert"`
		} `json:"aps"`
	}
	if len(body) == 0 {
		s.reject(w, 400, "PayloadEmpty")
		return
	}
	if json.Unmarshal(body, &payload) != nil {
		s.reject(w, 400, "BadPayload")
		return
	}
	if payload.Aps == nil {
		s.reject(w, 400, "PayloadEmpty")
		return
	}
	if h.Get("apns-push-type") == "background" {
		if payload.Aps.ContentAvailable == nil || *payload.Aps.ContentAvailable != 1 || payload.Aps.Alert != nil {
			s.reject(w, 400, "BadPayload")
			return
		}
		if h.Get("apns-priority") != "5" {
			s.reject(w, 400, "BadPriority")
			return
		}
	} else if len(payload.Aps.Alert) == 0 || (payload.Aps.Alert[0] != '{' && payload.Aps.Alert[0] != '"') {
		s.reject(w, 400, "BadPayload")
		return
	}
	s.mu.Lock()
	s.delivered[token]++
	s.total++
	s.mu.Unlock()
	w.Header().Set("apns-id", h.Get("apns-id"))
	w.WriteHeader(200)
}

func loadTeamKey(path string) *ecdsa.PublicKey {
	raw, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		log.Fatal("no PEM block in the team key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	private, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		log.Fatal("the team key is not an EC key")
	}
	return &private.PublicKey
}

func main() {
	certFile := flag.String("cert", "", "server certificate (PEM)")
	keyFile := flag.String("key", "", "server key (PEM)")
	teamKey := flag.String("team-key", "", "the team's .p8 key, whose public half checks provider tokens")
	keyID := flag.String("key-id", "", "expected kid")
	teamID := flag.String("team-id", "", "expected iss")
	topic := flag.String("topic", "", "expected apns-topic")
	flag.Parse()

	s := &standin{
		teamKey: loadTeamKey(*teamKey), keyID: *keyID, teamID: *teamID, topic: *topic,
		delivered: map[string]int{}, verified: map[string]int64{},
	}
	certificate, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{
		Handler:   s,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{certificate}, NextProtos: []string{"h2"}},
		ErrorLog:  log.New(io.Discard, "", 0),
		// APNs lets a provider keep about a thousand streams open on one connection.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
	go func() {
		if err := server.ServeTLS(listener, "", ""); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	origin, _ := json.Marshal(map[string]string{
		"origin": fmt.Sprintf("https://127.0.0.1:%d", listener.Addr().(*net.TCPAddr).Port),
	})
	fmt.Println(string(origin))
	input := bufio.NewScanner(os.Stdin)
	for input.Scan() {
		s.mu.Lock()
		counts, _ := json.Marshal(map[string]int{
			"total": s.total, "duplicates": s.total - len(s.delivered), "rejected": s.rejected,
		})
		s.mu.Unlock()
		fmt.Println(string(counts))
	}
}
