package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// exchange issues, for one of exchangeAudiences, a short-lived JWT that
// carries the subject token's sub and client_id, the requested scopes it
// holds, and an act claim naming tokentailor (RFC 8693 §4.1). Its exp is
// never later than the subject token's.
func (d *devAuthServer) exchange(w http.ResponseWriter, form url.Values) {
	subjectType := form.Get("subject_token_type")
	if form.Get("subject_token") == "" || subjectType == "" {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token and subject_token_type are required")
		return
	}
	if subjectType != tokenTypeAccessToken && subjectType != tokenTypeJWT {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be access_token or jwt")
		return
	}
	if (form.Get("actor_token") == "") != (form.Get("actor_token_type") == "") {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "actor_token and actor_token_type go together")
		return
	}
	requested := form.Get("requested_token_type")
	if requested != "" && requested != tokenTypeAccessToken && requested != tokenTypeJWT {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be access_token or jwt")
		return
	}
	targets := append(slices.Clone(form["audience"]), form["resource"]...)
	if len(targets) != 1 || !slices.Contains(d.exchangeAudiences, targets[0]) {
		oauthFail(w, http.StatusBadRequest, "invalid_target",
			fmt.Sprintf("ask for exactly one audience of %s", strings.Join(d.exchangeAudiences, ", ")))
		return
	}
	subject, ok := d.lookup(form.Get("subject_token"))
	if !ok {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token is invalid, expired or not issued here")
		return
	}
	if at := form.Get("actor_token"); at != "" {
		if _, ok := d.lookup(at); !ok {
			oauthFail(w, http.StatusBadRequest, "invalid_request", "actor_token is invalid, expired or not issued here")
			return
		}
	}
	held := strings.Fields(stringClaim(subject, "scope"))
	scopes := held
	if req := strings.Fields(form.Get("scope")); len(req) > 0 {
		scopes = slices.DeleteFunc(req, func(s string) bool { return !slices.Contains(held, s) })
		if len(scopes) == 0 {
			oauthFail(w, http.StatusBadRequest, "invalid_scope", "the subject token holds none of the requested scopes")
			return
		}
	}
	now := d.now()
	exp := now.Add(devExchangeTTL)
	if subjectExp, ok := numericDate(subject["exp"]); ok && subjectExp.Before(exp) {
		exp = subjectExp
	}
	if !now.Before(exp) {
		oauthFail(w, http.StatusBadRequest, "invalid_request", "subject_token is expired")
		return
	}
	act := map[string]any{"sub": d.clientID}
	if prior, ok := subject["act"].(map[string]any); ok {
		act["act"] = prior // RFC 8693 §4.1: the chain of earlier actors, nested
	}
	claims := jwt.MapClaims{
		"iss": d.url, "sub": subject["sub"], "aud": targets[0], "iat": now.Unix(), "exp": exp.Unix(),
		"jti": mustRandom(), "act": act,
	}
	if cid, ok := subject["client_id"]; ok {
		claims["client_id"] = cid
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	tok, err := d.signJWT(claims)
	if err != nil {
		oauthFail(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	issued := tokenTypeAccessToken
	if requested == tokenTypeJWT {
		issued = tokenTypeJWT
	}
	answer := map[string]any{
		"access_token": tok, "issued_token_type": issued, "token_type": "Bearer",
		"expires_in": int64(exp.Sub(now) / time.Second),
	}
	if len(scopes) > 0 {
		answer["scope"] = claims["scope"]
	}
	writeJSONStatus(w, http.StatusOK, answer)
}

func stringClaim(c map[string]any, name string) string {
	s, _ := c[name].(string)
	return s
}
