package secevent

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
)

// descriptions are the human-readable texts of RFC 8935 error answers: fixed
// per code, so nothing from the SET or from the issuer's key set is echoed.
var descriptions = map[string]string{
	"invalid_request":       "the body is not a SET this receiver accepts, or its token-revoked event cannot be read",
	"invalid_issuer":        "the SET issuer is not configured",
	"invalid_audience":      "the SET audience does not name this receiver",
	"invalid_key":           "the SET's signing key or algorithm is not accepted",
	"authentication_failed": "the SET signature does not verify",
}

// ServeHTTP receives one pushed SET (RFC 8935 §2): POST with Content-Type
// application/secevent+jwt. It answers 202 Accepted once the SET is verified
// and its revocations are spread (a duplicate jti too: nothing is done
// again), 400 with {"err", "description"} for a SET it refuses, 503 when a
// valid SET's revocation could not be spread (the transmitter retries), and
// 405/415/413 for requests that carry no SET.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a SET", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != MediaType {
		http.Error(w, "Content-Type must be "+MediaType, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxSETBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "SET too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	res, err := r.Receive(req.Context(), string(body))
	if err != nil {
		code, status := Code(err)
		r.log.WarnContext(req.Context(), "secevent: SET refused", "status", status, "err", code, "error", err)
		if code == "" {
			http.Error(w, "revocation could not be spread; retry", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"err": code, "description": descriptions[code]})
		return
	}
	r.log.DebugContext(req.Context(), "secevent: SET accepted", "revoked", res.Revoked, "ignored", res.Ignored, "duplicate", res.Duplicate)
	w.WriteHeader(http.StatusAccepted)
}
