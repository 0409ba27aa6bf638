// Package genesys knows Genesys Cloud's regions, so that a client keeps one
// breaker per region, as T10 asks: the regions are the failure domains, and
// all tenants of a region share them.
//
//	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Key: genesys.Key}}
//
// Key maps "https://api.mypurecloud.ie/..." to the breaker key
// "genesys/eu-west-1"; RegionOfHost gives the bare region.
package genesys

import (
	"net/http"
	"strings"
)

// genesysRegion is a Genesys Cloud region: its AWS region name and the
// breaker key Key gives it, built once so that keying a request
// allocates nothing.
type genesysRegion struct{ region, key string }

// genesysDomains maps the domain of each public Genesys Cloud region (the
// host without its first label: api., login., apps.) to the region, as the
// Genesys Cloud platform SDKs list them, plus the pure.cloud aliases of the
// older regions.
var genesysDomains = func() map[string]genesysRegion {
	m := map[string]string{
		"mypurecloud.com":        "us-east-1",
		"use2.us-gov-pure.cloud": "us-east-2",
		"usw2.pure.cloud":        "us-west-2",
		"cac1.pure.cloud":        "ca-central-1",
		"mxc1.pure.cloud":        "mx-central-1",
		"sae1.pure.cloud":        "sa-east-1",
		"mypurecloud.ie":         "eu-west-1",
		"euw1.pure.cloud":        "eu-west-1",
		"euw2.pure.cloud":        "eu-west-2",
		"mypurecloud.de":         "eu-central-1",
		"euc1.pure.cloud":        "eu-central-1",
		"euc2.pure.cloud":        "eu-central-2",
		"mec1.pure.cloud":        "me-central-1",
		"aps1.pure.cloud":        "ap-south-1",
		"apse1.pure.cloud":       "ap-southeast-1",
		"mypurecloud.com.au":     "ap-southeast-2",
		"apse2.pure.cloud":       "ap-southeast-2",
		"mypurecloud.jp":         "ap-northeast-1",
		"apne1.pure.cloud":       "ap-northeast-1",
		"apne2.pure.cloud":       "ap-northeast-2",
		"apne3.pure.cloud":       "ap-northeast-3",
	}
	out := make(map[string]genesysRegion, len(m))
	for domain, region := range m {
		out[domain] = genesysRegion{region: region, key: "genesys/" + region}
	}
	return out
}()

// RegionOfHost returns the AWS region of a Genesys Cloud host, e.g.
// "eu-west-1" for "api.mypurecloud.ie" or "ap-south-1" for
// "api.aps1.pure.cloud:443". It reports false for any other host.
func RegionOfHost(host string) (string, bool) {
	r, ok := genesysLookup(host)
	return r.region, ok
}

func genesysLookup(host string) (genesysRegion, bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".") // ToLower allocates only if host has capitals
	_, domain, ok := strings.Cut(host, ".")
	if !ok {
		return genesysRegion{}, false
	}
	r, ok := genesysDomains[domain]
	return r, ok
}

// Key is a key function (for httpbreaker.Transport.Key) for Genesys Cloud: one
// breaker per region, as T10 asks, since the regions are the failure domains
// and all tenants of a region share them. A request to "api.mypurecloud.ie"
// gets the key "genesys/eu-west-1"; the "genesys/" prefix makes the
// registry's default profile selection apply the profile named "genesys"
// (e.g. T10's 10 failures / 60 s / 3 successes). A request to any other host
// is keyed by its host, as httpbreaker.ByHost does.
func Key(req *http.Request) string {
	if r, ok := genesysLookup(req.URL.Host); ok {
		return r.key
	}
	return req.URL.Host
}
