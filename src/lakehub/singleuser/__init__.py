"""What runs inside a user's notebook server: the kernel launcher, the credential process
for named AWS profiles, and the endpoint fix-up those profiles need."""
