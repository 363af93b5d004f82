-- The channels people asked in, per platform: where the Discord adapter looks for
-- prompts sent while it was down (bots cannot list their DM channels).
CREATE INDEX prompts_channel ON prompts(platform, channel);
