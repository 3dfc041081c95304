#include "server/service/committed_batch.hpp"

#include <algorithm>

#include "protocol/page_size.hpp"

namespace im::server {

std::shared_ptr<const CommittedBatch> CommittedBatch::names_only(std::vector<std::string> owners) {
  auto batch = std::make_shared<CommittedBatch>();
  batch->inboxes.reserve(owners.size());
  for (std::string& o : owners) batch->inboxes.push_back(Inbox{std::move(o), 0, 0, 0, 0});
  return batch;
}

std::optional<CommitPage> page_from_commit(const CommittedBatch& batch,
                                           const CommittedBatch::Inbox& inbox,
                                           std::int64_t after_seq, std::uint32_t limit,
                                           std::size_t max_bytes) {
  if (!inbox.has_run() || limit == 0 || after_seq + 1 != inbox.first_seq) return std::nullopt;
  if (inbox.begin > inbox.end || inbox.end > batch.messages.size()) return std::nullopt;
  const std::span<const protocol::MessageRecord> run(batch.messages.data() + inbox.begin,
                                                     inbox.end - inbox.begin);
  CommitPage page;
  std::size_t take = std::min<std::size_t>(run.size(), limit);
  protocol::PageFill fill(max_bytes);
  for (std::size_t i = 0; i < take; ++i) {
    if (!fill.take(run[i])) {
      take = i;
      break;
    }
  }
  page.messages = run.first(take);
  if (take < run.size() || (take == limit && run[take - 1].seq < inbox.last_seq)) {
    // The page is full (by count or bytes) and the run goes on (messages or
    // tombstones): stop at the last message taken, as the query does.
    page.next_after_seq = run[take - 1].seq;
    page.has_more = true;
  } else {
    page.next_after_seq = inbox.last_seq;
  }
  return page;
}

}  // namespace im::server
