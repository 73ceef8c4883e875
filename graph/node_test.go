package graph

import "testing"

func TestWorkloadOfPod(t *testing.T) {
	for _, tc := range []struct{ pod, want string }{
		{"ts-contacts-service-866bd68c97-xcqfx", "ts-contacts-service"},
		{"ts-ui-dashboard-5477b965f-2chkr", "ts-ui-dashboard"},
		{"ts-food-service-f5756978c-k8vqf", "ts-food-service"},
		{"frontend-7d4f5b99fd-ktwc6", "frontend"},
		{"redis-cart-0", "redis-cart"},           // StatefulSet ordinal
		{"node-exporter-x7k2p", "node-exporter"}, // DaemonSet: suffix only
		{"ts-travel2-service", "ts-travel2-service"},
		{"checkout", "checkout"},
		// A last word that is not a pod suffix (vowels) stays.
		{"ts-admin-route", "ts-admin-route"},
	} {
		if got := WorkloadOfPod(tc.pod); got != tc.want {
			t.Errorf("WorkloadOfPod(%q) = %q, want %q", tc.pod, got, tc.want)
		}
	}
}
