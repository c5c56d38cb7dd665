// LakeHub in JupyterLab: "Publish Notebook as a Read-Only Page" (the command palette and the
// LakeHub menu). The open notebook is saved, then the server's own LakeHub extension
// (lakehub.singleuser.lab_publish) publishes the file on disk with the user's token.
import { ICommandPalette, InputDialog, showDialog, Dialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

const COMMAND = 'lakehub:publish';
const AUDIENCES = {
  'every LakeHub user': 'hub',
  'anyone with the link': 'public',
  'only me': 'private'
};

function notebook(app) {
  const widget = app.shell.currentWidget;
  const path = widget && widget.context ? widget.context.path : '';
  return path.endsWith('.ipynb') ? widget : null;
}

async function publish(app) {
  const widget = notebook(app);
  if (!widget) {
    return;
  }
  const path = widget.context.path;
  const choice = await InputDialog.getItem({
    title: `Publish ${path} as a read-only page`,
    label: 'Who may open it (a new version if published before)',
    items: Object.keys(AUDIENCES),
    current: 0
  });
  if (!choice.button.accept || !choice.value) {
    return;
  }
  await widget.context.save();
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(
    URLExt.join(settings.baseUrl, 'lakehub', 'publish'),
    { method: 'POST', body: JSON.stringify({ path, to: AUDIENCES[choice.value] }) },
    settings
  );
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    await showDialog({
      title: 'Not published',
      body: data.message || response.statusText,
      buttons: [Dialog.okButton()]
    });
    return;
  }
  const link = new URL(data.path, window.location.origin).href;
  const opened = await showDialog({
    title: `Published: ${data.name}, version ${data.version}`,
    body: `${link} (this link shows its newest version; the portal lists your pages under Published)`,
    buttons: [Dialog.cancelButton({ label: 'Close' }), Dialog.okButton({ label: 'Open the page' })]
  });
  if (opened.button.accept) {
    window.open(link, '_blank', 'noopener');
  }
}

export default {
  id: '@lakehub/publish:plugin',
  description: 'Publish the open notebook as a read-only page at a link.',
  autoStart: true,
  optional: [ICommandPalette],
  activate: (app, palette) => {
    app.commands.addCommand(COMMAND, {
      label: 'Publish Notebook as a Read-Only Page…',
      isEnabled: () => notebook(app) !== null,
      execute: () => publish(app)
    });
    if (palette) {
      palette.addItem({ command: COMMAND, category: 'LakeHub' });
    }
  }
};
