import { api } from './api';
import type { TaskStatus, TaskView } from './bindings';
import { i18n } from './i18n/index.svelte';
import { sync } from './state/sync.svelte';
import { toast } from './state/toast.svelte';

/** Marks a task done or cancelled, confirms it, and refreshes the sync bar. */
export async function setTaskStatus(task: TaskView, status: TaskStatus): Promise<void> {
  await api.setTaskStatus(task.id, status);
  toast.show(i18n.t(status === 'done' ? 'task.done_toast' : 'task.cancelled_toast'));
  void sync.refresh();
}
