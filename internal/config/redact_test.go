package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, out string }{
		{"empty", "", ""},
		{"url with password", "postgres://tandem:s3cret@db.example:5432/crm?sslmode=require",
			"postgres://tandem:xxxxx@db.example:5432/crm?sslmode=require"},
		{"postgresql scheme", "postgresql://u:p@h/d", "postgresql://u:xxxxx@h/d"},
		{"url without password", "postgres://tandem@db.example/crm", "postgres://tandem@db.example/crm"},
		{"url without user", "postgres://db.example:5432/crm", "postgres://db.example:5432/crm"},
		{"url with empty password", "postgres://u:@h/d", "postgres://u:xxxxx@h/d"},
		{"password with unencoded @ / ? and :", "postgres://u:p@ss/w?rd:x@h:5432/d", "postgres://u:xxxxx@h:5432/d"},
		{"password in the query", "postgres://h/d?sslmode=verify-full&password=s3cret&sslpassword=k3y",
			"postgres://h/d?sslmode=verify-full&password=xxxxx&sslpassword=xxxxx"},
		{"encoded and upper-case query key", "postgres://h/d?Pass%77ord=s3cret", "postgres://h/d?Pass%77ord=xxxxx"},
		{"@ in the query never uncovers a password", "postgres://h:1/d?application_name=a@b&password=s3cret",
			"postgres://h:xxxxx@b&password=xxxxx"},
		{"multiple hosts", "postgres://u:pw@h1:5432,h2:5433/d", "postgres://u:xxxxx@h1:5432,h2:5433/d"},
		{"key=value", "host=db.example port=5432 user=tandem password=s3cret dbname=crm",
			"host=db.example port=5432 user=tandem password=xxxxx dbname=crm"},
		{"key=value with quotes and spaces", `host = db.example  password = 'se cr\'et' sslpassword='k'`,
			"host=db.example password=xxxxx sslpassword=xxxxx"},
		{"key=value with escaped space", `password=se\ cret user=u`, "password=xxxxx user=u"},
		{"key=value without password", "host=/tmp dbname=crm", "host=/tmp dbname=crm"},
		{"unclosed quote", "host=h password='s3cret", "xxxxx"},
		{"not a DSN", "s3cret", "xxxxx"},
		{"key without value", "host=h password", "xxxxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.out, RedactDSN(tc.in))
		})
	}
}
