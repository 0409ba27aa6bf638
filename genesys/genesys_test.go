package genesys_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/breakerbox/breakerbox/genesys"
)

func TestRegionOfHost(t *testing.T) {
	tests := []struct{ host, region string }{
		{"api.mypurecloud.com", "us-east-1"},
		{"api.mypurecloud.ie", "eu-west-1"},
		{"api.mypurecloud.de", "eu-central-1"},
		{"api.mypurecloud.jp", "ap-northeast-1"},
		{"api.mypurecloud.com.au", "ap-southeast-2"},
		{"api.usw2.pure.cloud", "us-west-2"},
		{"api.cac1.pure.cloud", "ca-central-1"},
		{"api.euw2.pure.cloud", "eu-west-2"},
		{"api.euc2.pure.cloud", "eu-central-2"},
		{"api.aps1.pure.cloud", "ap-south-1"},
		{"api.apne2.pure.cloud", "ap-northeast-2"},
		{"api.apne3.pure.cloud", "ap-northeast-3"},
		{"api.sae1.pure.cloud", "sa-east-1"},
		{"api.mec1.pure.cloud", "me-central-1"},
		{"api.use2.us-gov-pure.cloud", "us-east-2"},
		{"login.mypurecloud.ie", "eu-west-1"},
		{"API.MyPureCloud.IE:443", "eu-west-1"},
		{"api.mypurecloud.ie.", "eu-west-1"},
		{"api.example.com", ""},
		{"mypurecloud.ie", ""},
		{"localhost", ""},
		{"[::1]:8080", ""},
	}
	for _, tt := range tests {
		region, ok := genesys.RegionOfHost(tt.host)
		if region != tt.region || ok != (tt.region != "") {
			t.Errorf("RegionOfHost(%q) = %q, %v; want %q", tt.host, region, ok, tt.region)
		}
	}
}

func TestKeyIsTheRegionForGenesysHostsAndTheHostOtherwise(t *testing.T) {
	for url, want := range map[string]string{
		"https://api.mypurecloud.ie/api/v2/users/me": "genesys/eu-west-1",
		"https://api.aps1.pure.cloud:443/x":          "genesys/ap-south-1",
		"https://api.example.com:8443/x":             "api.example.com:8443",
	} {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := genesys.Key(req); got != want {
			t.Errorf("Key(%s) = %q, want %q", url, got, want)
		}
	}
}

func TestKeyAllocatesNothing(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "https://api.mypurecloud.ie/api/v2/users/me", nil)
	if n := testing.AllocsPerRun(100, func() { _ = genesys.Key(req) }); n != 0 {
		t.Fatalf("Key allocates %v times per call, want 0", n)
	}
}

func ExampleRegionOfHost() {
	region, ok := genesys.RegionOfHost("api.aps1.pure.cloud")
	fmt.Println(region, ok)
	// Output: ap-south-1 true
}
