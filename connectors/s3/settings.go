package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/connectors"
)

// Settings say how to reach S3 or an S3-compatible store. The names are
// Feldera's s3_input names; delta_table_input and iceberg_input accept the
// same ones for s3:// URIs.
type Settings struct {
	// Region is the AWS region ("us-east-1"). Empty: the standard AWS
	// chain's region (AWS_REGION, ~/.aws/config), else us-east-1.
	Region string `json:"region,omitempty"`
	// EndpointURL points the client at an S3-compatible store
	// ("http://localhost:9000" for MinIO). Requests then use path-style
	// addressing (http://host/bucket/key), which such stores expect.
	EndpointURL string `json:"endpoint_url,omitempty"`
	// NoSignRequest sends unsigned requests, for public buckets (the AWS
	// CLI's --no-sign-request).
	NoSignRequest bool `json:"no_sign_request,omitempty"`
	// AccessKeyID and SecretAccessKey are static credentials; write them as
	// ${env:NAME} to keep them out of the pipeline file and workflow
	// history. Empty: the standard AWS credential chain (environment,
	// shared files, SSO, instance roles).
	AccessKeyID     string `json:"aws_access_key_id,omitempty"`
	SecretAccessKey string `json:"aws_secret_access_key,omitempty"`
}

// Validate checks the settings without I/O; field paths are relative to
// the transport config.
func (s Settings) Validate() error {
	var errs []error
	if s.EndpointURL != "" {
		if u, err := url.Parse(s.EndpointURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, connectors.TransportError("endpoint_url", "want an http:// or https:// URL, got %q", s.EndpointURL))
		}
	}
	if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
		errs = append(errs, connectors.TransportError("aws_secret_access_key", "aws_access_key_id and aws_secret_access_key go together"))
	}
	if s.NoSignRequest && s.AccessKeyID != "" {
		errs = append(errs, connectors.TransportError("no_sign_request", "unsigned requests take no aws_access_key_id"))
	}
	return errors.Join(errs...)
}

// Client returns an S3 client for the settings. It does no I/O beyond
// reading the local AWS configuration files.
func (s Settings) Client(ctx context.Context) (*awss3.Client, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if s.Region != "" {
		opts = append(opts, awsconfig.WithRegion(s.Region))
	}
	switch {
	case s.NoSignRequest:
		opts = append(opts, awsconfig.WithCredentialsProvider(aws.AnonymousCredentials{}))
	case s.AccessKeyID != "":
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("load AWS configuration: %w", err))
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		// Ranged GETs carry no whole-object checksum; the SDK would log
		// that it skipped validation on every one.
		o.DisableLogOutputChecksumValidationSkipped = true
		if s.EndpointURL != "" {
			o.BaseEndpoint = aws.String(s.EndpointURL)
			o.UsePathStyle = true
		}
	}), nil
}

// fatalCodes are the S3 error codes that retrying cannot fix.
var fatalCodes = map[string]bool{
	"NoSuchBucket": true, "NoSuchKey": true, "NotFound": true, "AccessDenied": true,
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "InvalidBucketName": true,
	"AuthorizationHeaderMalformed": true, "PermanentRedirect": true, "InvalidObjectState": true,
}

// ReachError wraps an error from an S3 call made while opening a source:
// what the call was, the bucket and key, and [connectors.Fatal] for
// missing buckets and keys, refused credentials and an unreachable
// endpoint. Other errors stay retryable.
func ReachError(what, bucket, key string, err error) error {
	where := "s3://" + bucket + "/" + key
	var api smithy.APIError
	if errors.As(err, &api) {
		e := fmt.Errorf("%s %s: %s: %s", what, where, api.ErrorCode(), api.ErrorMessage())
		if fatalCodes[api.ErrorCode()] {
			return connectors.Fatal(e)
		}
		return e
	}
	var nerr net.Error
	var oerr *net.OpError
	if errors.As(err, &oerr) || errors.As(err, &nerr) || strings.Contains(err.Error(), "failed to retrieve credentials") {
		return connectors.Fatal(fmt.Errorf("%s %s: %w", what, where, err))
	}
	return fmt.Errorf("%s %s: %w", what, where, err)
}

// Object reads one S3 object with ranged GETs. It implements io.ReaderAt,
// io.Reader and io.Seeker (parquet.ReaderAtSeeker), so Parquet readers
// fetch only the footer and the column chunks they need. Not safe for
// concurrent Read and Seek; ReadAt may run concurrently.
type Object struct {
	ctx    context.Context
	client *awss3.Client
	bucket string
	key    string
	size   int64
	pos    int64
}

// OpenObject returns a reader for bucket/key after a HEAD request that
// learns its size. Errors are as [ReachError]'s.
func OpenObject(ctx context.Context, client *awss3.Client, bucket, key string) (*Object, error) {
	head, err := client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, ReachError("head", bucket, key, err)
	}
	return &Object{ctx: ctx, client: client, bucket: bucket, key: key, size: aws.ToInt64(head.ContentLength)}, nil
}

// Size returns the object's length in bytes.
func (o *Object) Size() int64 { return o.size }

// ReadAt reads len(p) bytes at off with one GET of that range.
func (o *Object) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), o.size)
	rng := fmt.Sprintf("bytes=%d-%d", off, end-1)
	out, err := o.client.GetObject(o.ctx, &awss3.GetObjectInput{Bucket: &o.bucket, Key: &o.key, Range: &rng})
	if err != nil {
		return 0, fmt.Errorf("get s3://%s/%s %s: %w", o.bucket, o.key, rng, err)
	}
	defer out.Body.Close()
	n, err := io.ReadFull(out.Body, p[:end-off])
	if err == nil && end-off < int64(len(p)) {
		err = io.EOF
	}
	return n, err
}

// Read reads from the current position.
func (o *Object) Read(p []byte) (int, error) {
	n, err := o.ReadAt(p, o.pos)
	o.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek sets the position for Read.
func (o *Object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.size
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek s3://%s/%s to %d", o.bucket, o.key, offset)
	}
	o.pos = offset
	return offset, nil
}

// Stream returns the object's bytes from offset on, as one GET.
func Stream(ctx context.Context, client *awss3.Client, bucket, key string, offset int64) (io.ReadCloser, error) {
	in := &awss3.GetObjectInput{Bucket: &bucket, Key: &key}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := client.GetObject(ctx, in)
	if err != nil {
		var api smithy.APIError
		if offset > 0 && errors.As(err, &api) && api.ErrorCode() == "InvalidRange" {
			return io.NopCloser(strings.NewReader("")), nil // offset is the object's end
		}
		return nil, ReachError("get", bucket, key, err)
	}
	return out.Body, nil
}
